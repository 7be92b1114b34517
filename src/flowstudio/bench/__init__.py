"""`flowstudio bench`: the engine benchmark over the real path (PostgreSQL + RabbitMQ + processes).

`run_bench(settings, args)` (session.py) creates a throwaway database and queue (sandbox.py),
measures the PostgreSQL ceiling (ceiling.py), starts an orchestrator and workers, drives no-op chain
runs through them (workload.py) while metering their CPU (cpu.py) and prints the figures
(report.py). `--llm` (llm.py, llm_report.py): a batch of LLM calls through the HTTP API against a
capped fake provider (fakeprovider.py); `--scale` (scale.py) and `--vectors` (vectors.py).
"""

from flowstudio.bench.session import run_bench

__all__ = ["run_bench"]
