"""The OpenAPI spec describes every answer: no 2xx body of any operation is an untyped object.

Flow: build the app (`create_app`, no database needed), take its OpenAPI schema (the one served at
/schema/openapi.json, from which `frontend/generated/openapi.d.ts` is generated), then check
1. every 2xx response with content (JSON, and the item type of SSE / JSONL streams) is a named
   component (`$ref`), a list of them, or a scalar: never `{}` or an `additionalProperties`-only
   object, except the routes in UNTYPED_ROUTES (empty today; a new entry needs its reason);
2. inside the components, the only open (free-form) fields are those in FREE_FORM: payloads whose
   type is truly open (run inputs/outputs, node params, flow definitions, ...). A new `dict[str, Any]`
   field fails here until it is typed or added with its reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowstudio.api.app import create_app
from flowstudio.settings import load_settings

# (METHOD, path, status) -> why its answer stays untyped in the spec
UNTYPED_ROUTES: dict[tuple[str, str, str], str] = {}

# field name -> why it is free-form wherever it appears
FREE_FORM = {
    "definition": "the canvas's flow definition (DESIGN.md §4), validated by flows/validate.py",
    "inputs": "run inputs: whatever the flow's input node accepts",
    "outputs": "run outputs: whatever the flow's output node produced",
    "tweaks": "per-node param overrides of one run",
    "error": "an error object of the engine or a node (its keys depend on the failure)",
    "input": "a step's input: the upstream outputs it was given",
    "output": "a step's output: node-type specific",
    "data": "the event log's per-kind data",
    "payload": "a signal's payload, chosen by the caller",
    "input_value": "the chat input of a sync run (any JSON)",
    "params_schema": "a JSON Schema document (the node's params form)",
    "info": "a process's self-reported details (ops page)",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(load_settings(None)).openapi_schema.to_schema()
    return schema


def is_open(schema: dict[str, Any]) -> bool:
    """True for a schema that says nothing about its shape: `{}` or a map of anything."""
    if schema == {}:
        return True
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return any(is_open(s) for s in schema[key] if s.get("type") != "null")
    if schema.get("type") == "array":
        return is_open(schema.get("items", {}))
    return (
        schema.get("type") == "object"
        and "properties" not in schema
        and schema.get("additionalProperties", True) in (True, {})
    )


def success_bodies(spec: dict[str, Any]) -> list[tuple[tuple[str, str, str], str, dict[str, Any]]]:
    out = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    continue
                for media_type, content in (response.get("content") or {}).items():
                    out.append(((method.upper(), path, status), media_type, content["schema"]))
    return out


def test_every_success_response_is_a_named_type(spec: dict[str, Any]) -> None:
    bodies = success_bodies(spec)
    assert len(bodies) > 60, "the spec lists the API's routes"
    untyped = [
        f"{key} {media_type}: {schema}"
        for key, media_type, schema in bodies
        if is_open(schema) and key not in UNTYPED_ROUTES
    ]
    assert not untyped, "untyped 2xx answers (return a msgspec Struct):\n" + "\n".join(untyped)
    stale = set(UNTYPED_ROUTES) - {key for key, _, schema in bodies if is_open(schema)}
    assert not stale, f"typed now, drop them from UNTYPED_ROUTES: {stale}"


def test_run_and_flow_answers_are_components(spec: dict[str, Any]) -> None:
    """Spot checks that the designer's main types are in the spec with their fields required."""
    schemas = spec["components"]["schemas"]
    run = schemas["RunDetail"]
    assert {"id", "status", "steps", "usage", "outputs", "error"} <= set(run["required"])
    assert run["properties"]["steps"]["items"] == {"$ref": "#/components/schemas/StepOut"}
    assert set(schemas["RunStatus"]["enum"]) >= {"queued", "succeeded", "failed", "cancelled"}
    flow = schemas["FlowWithAccess"]
    assert {"id", "version", "definition", "access", "published_version"} <= set(flow["required"])
    assert "value" not in schemas["SecretOut"]["properties"], "secret values are write-only"


def test_only_free_form_payloads_are_open_fields(spec: dict[str, Any]) -> None:
    open_fields = {
        f"{name}.{field}"
        for name, component in spec["components"]["schemas"].items()
        for field, schema in (component.get("properties") or {}).items()
        if is_open(schema) and field not in FREE_FORM
    }
    assert (
        not open_fields
    ), f"type these fields or add them to FREE_FORM with a reason: {open_fields}"
