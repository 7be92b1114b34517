"""`flowstudio bench --llm`'s machine ceiling: cores x 1000 / the CPU ms per item of all roles,
and which of the machine and the provider bounds the batch."""

from __future__ import annotations

from typing import Any

from flowstudio.bench.llm_report import (
    Checked,
    LlmConfig,
    build_llm_result,
    cpu_ceiling,
    render_llm_table,
    usable_cores,
)


def test_the_ceiling_counts_every_role_and_skips_the_unknown() -> None:
    assert cpu_ceiling({"worker": 8.0, "postgres": 6.0, "api": None, "bench": 2.0}, 2) == 125.0
    assert cpu_ceiling({"worker": None}, 2) is None


def result(cpu_s: float) -> dict[str, Any]:
    config = LlmConfig(
        items=1000,
        latency=0.5,
        cap=64,
        rpm=0,
        retry_after=1.0,
        workers=2,
        concurrency=256,
        as_json=False,
    )
    provider = {
        "calls": 1000,
        "busy_call_seconds": 500.0,
        "peak_in_flight": 64,
        "in_flight_by_second": [60.0],
        "rejected_at": [],
        "rejected_429": 0,
    }
    return build_llm_result(
        config,
        wall_s=10.0,
        client_wall_s=10.5,
        first_call_s=0.3,
        checked=Checked(1000, 0),
        provider=provider,
        api_rss_peak=2**20,
        worker_rss_peak=2**20,
        rss_at_done={},
        cpu_s={"worker": cpu_s, "postgres": None},
    )


def test_a_machine_slower_than_the_provider_is_named_as_the_bound() -> None:
    cores = usable_cores()  # the provider allows 64 / 0.5 s = 128 calls/s
    slow = result(cpu_s=cores * 1000 / 64)  # the machine does 64 items/s
    fast = result(cpu_s=cores * 1000 / 250)  # 250 items/s
    assert slow["cpu_ceiling_items_per_s"] == 64.0 and slow["bound"] == "cpu"
    assert "64.0 items/s against the provider's 128.0: bound by this machine's CPU" in (
        render_llm_table(slow)
    )
    assert fast["cpu_ceiling_items_per_s"] == 250.0 and fast["bound"] == "provider"
    assert "bound by the provider" in render_llm_table(fast)
