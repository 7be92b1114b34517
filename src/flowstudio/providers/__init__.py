"""Cluster-wide LLM provider limits (issue 12): identity, permits tied to step leases.

`identity` names a provider (normalised base_url + a fingerprint of its API key), `permits` takes and
returns call permits (`provider_call`, used by `nodes/llm.py`). Parking a step that found no capacity
or got a 429, and waking it, is a step move: `engine/parking.py` (this package sits below `engine`).
"""
