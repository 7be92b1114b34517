"""Observability: Prometheus metrics, OpenTelemetry traces and structured logs.

- `logs`: LOG_FORMAT=text|json and the per-step log context (run_id, step_id, node_id, attempt, worker).
- `counters`: counters made outside the API (LLM calls/tokens/429s, lease expiries) buffered in memory
  and flushed as deltas into `metrics_counters`, so one scrape of the API covers every process.
- `dbmetrics`: the database-backed collector behind `GET /metrics` (runs, steps, queues, workers, ...).
- `http`: the API's own families (requests by route template and status, its DB pool) and the route.
- `standalone`: METRICS_PORT for a process started alone (worker, orchestrator).
- `tracing`: OpenTelemetry, on only when OTEL_EXPORTER_OTLP_ENDPOINT is set (imported lazily).
"""
