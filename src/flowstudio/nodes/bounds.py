"""Bounded number types for node params: one place for the limits every numeric param carries.

Params Structs annotate their numbers with these (`timeout_s: CallTimeout = 120.0`), so msgspec
refuses an out-of-range value when a flow is saved (422 with the field path, `flows/validate.py`) and
when a template renders one at run time (`worker/context.render_node_params`: a non-retryable step
failure, never a poisoned timer or a lease-long retry loop). The JSON Schema of the node catalogue
carries the same minimum/maximum, so the designer's forms show them. `RetryPolicy` (a node's
`data.retry`, re-exported by `flows/model.py`) and `MAP_MAX_ITEMS` live here too, so the flow model and
the engine depend on nodes/ and never the other way round. The aliases below are one line each by
design: their repetition is the table of limits (`duplicates` pairs them by shape).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

DAY = 86_400

# One alias per bound, alike line by line on purpose: each names its own min/max (forms read them).
DelaySeconds = Annotated[float, Meta(ge=0, le=30 * DAY, description="at most 30 days")]
WaitSeconds = Annotated[float, Meta(gt=0, le=365 * DAY, description="at most 365 days")]
CallTimeout = Annotated[float, Meta(gt=0, le=3600, description="seconds, at most 3600")]
StepTimeout = Annotated[float, Meta(gt=0, le=7 * DAY, description="seconds, at most 7 days")]
Retries = Annotated[int, Meta(ge=0, le=10)]
RetryWait = Annotated[float, Meta(ge=0, le=600)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
MaxTokens = Annotated[int, Meta(ge=1, le=1_000_000)]
Turns = Annotated[int, Meta(ge=1, le=100)]
Concurrency = Annotated[int, Meta(ge=1, le=1000)]
Version = Annotated[int, Meta(ge=1, le=1_000_000_000)]
Attempt = Annotated[int, Meta(ge=0, le=1000)]
# CPU-bound (the process pool, under the node timeout): millions of rounds are a legitimate slow step
HashRounds = Annotated[int, Meta(ge=1, le=10_000_000)]
ChunkChars = Annotated[int, Meta(ge=1, le=1_000_000)]
OverlapChars = Annotated[int, Meta(ge=0, le=1_000_000)]
TopK = Annotated[int, Meta(ge=1, le=1000)]
Score = Annotated[float, Meta(ge=-1, le=1)]
Dimensions = Annotated[int, Meta(ge=1, le=65_536)]
BatchSize = Annotated[int, Meta(ge=1, le=2048)]
MessageLimit = Annotated[int, Meta(ge=1, le=10_000)]
DocumentBytes = Annotated[int, Meta(ge=1, le=1_000_000_000)]
TextLength = Annotated[int, Meta(ge=1, le=100_000_000)]
Splits = Annotated[int, Meta(ge=0, le=1_000_000)]
RegexTimeout = Annotated[float, Meta(gt=0, le=10, description="seconds, at most 10")]
MAP_MAX_ITEMS = 1_000_000  # items one `map` step may fan out to


class RetryPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A node's retries: attempts and exponential backoff (`data.retry` of a flow node)."""

    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 1
    initial_interval: Annotated[float, Meta(ge=0, le=DAY)] = 1.0
    backoff: Annotated[float, Meta(ge=1, le=100)] = 2.0
    max_interval: Annotated[float, Meta(ge=0, le=30 * DAY)] = 300.0
