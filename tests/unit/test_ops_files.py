"""ops/: the Prometheus config and alert rules pass promtool (check config, check rules, and the
rule unit tests in alerts_test.yml), and the Grafana dashboard is valid JSON whose queries only use
metric families that GET /metrics exposes (named in the README)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`, ops/services.sh)"
)
FAMILIES = {
    "flowstudio_runs_total",
    "flowstudio_steps_total",
    "flowstudio_step_duration_seconds_bucket",
    "flowstudio_run_duration_seconds_bucket",
    "flowstudio_step_retries_total",
    "flowstudio_queue_depth",
    "flowstudio_workers",
    "flowstudio_processes",
    "flowstudio_runs_live",
    "flowstudio_steps_live",
    "flowstudio_outbox_lag_seconds",
    "flowstudio_timers_due",
    "flowstudio_lease_expiries_total",
    "flowstudio_redispatches_total",
    "flowstudio_llm_requests_total",
    "flowstudio_llm_tokens_total",
    "flowstudio_http_requests_total",
    "flowstudio_http_request_duration_seconds_bucket",
    "flowstudio_db_pool_connections",
    "flowstudio_api_db_pool_connections",
    "flowstudio_metrics_collection_seconds",
    "flowstudio_provider_in_flight",
    "flowstudio_provider_effective_concurrency",
    "flowstudio_provider_parked_steps",
    "flowstudio_provider_throttled_total",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=OPS)


@needs_promtool
def test_prometheus_config_is_valid() -> None:
    r = promtool("check", "config", "prometheus/prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_alert_rules_are_valid_and_fire_as_their_unit_tests_say() -> None:
    r = promtool("check", "rules", "prometheus/alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("test", "rules", "prometheus/alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_alerts_cover_what_an_operator_is_paged_for() -> None:
    text = (OPS / "prometheus" / "alerts.yml").read_text()
    for name in (
        "FlowstudioNoLiveWorkers",
        "FlowstudioQueueGrowing",
        "FlowstudioOutboxLag",
        "FlowstudioRunFailureRate",
        "FlowstudioProviderRateLimited",
    ):
        assert f"alert: {name}" in text


def test_grafana_dashboard_queries_only_exposed_families() -> None:
    dashboard = json.loads((OPS / "grafana" / "flowstudio.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    used = {m for e in exprs for m in re.findall(r"\bflowstudio_[a-z_]+", e)}
    assert used <= FAMILIES, used - FAMILIES
    for required in ("flowstudio_runs_total", "flowstudio_queue_depth", "flowstudio_workers"):
        assert required in used
