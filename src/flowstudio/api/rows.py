"""Rows to response Structs: `row_as(cls, row, **extra)`.

A store function returns dict rows; a handler answers with a typed Struct
(`tests/unit/test_openapi_types.py`).
`row_as` converts one row (extra keys ignored, `extra` fields added or overriding) with msgspec's
validation, after writing UUID values as strings, the form the `*Out` Structs declare for ids.
"""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def row_as(cls: type[S], row: dict[str, Any], **extra: Any) -> S:
    """`row` (plus `extra`) as `cls`; UUIDs become strings."""
    fields = {k: str(v) if isinstance(v, UUID) else v for k, v in row.items()}
    return msgspec.convert({**fields, **extra}, cls)
