"""Cluster-wide LLM provider limits (issue 12): identity, permits tied to step leases, parking.

`identity` names a provider (normalised base_url + a fingerprint of its API key), `permits` takes and
returns call permits (`provider_call`, used by `nodes/llm.py`), `parking` parks a step that found no
capacity or got a 429 and wakes it when capacity returns (worker commit + orchestrator timer pass).
"""
