"""Pure logic of secrets: the AES-GCM box, which names a template references, the sandboxed `secrets`
object, and masking of values in what a node returns."""

from __future__ import annotations

import pytest

from flowstudio.auth.secrets import SecretBox, SecretDecryptError, SecretKeyMissing
from flowstudio.nodes import registry
from flowstudio.nodes.registry import Done, NodeError
from flowstudio.nodes.sandbox import Secret
from flowstudio.nodes.templating import referenced_secrets, render_params, rendering
from flowstudio.worker.context import render_node_params
from flowstudio.worker.execute import Failure
from flowstudio.worker.secret_values import (
    PROBLEMS_KEY,
    VALUES_KEY,
    SecretValues,
    mask_outcome,
    secret_problem,
)


def test_box_round_trips_and_binds_owner_and_name() -> None:
    box = SecretBox.from_secret_key("k1")
    ct, nonce = box.encrypt("owner-a", "TOKEN", "s3cr3t-value")
    assert b"s3cr3t-value" not in ct and len(nonce) == 12
    assert box.decrypt("owner-a", "TOKEN", ct, nonce) == "s3cr3t-value"
    for owner, name in (("owner-b", "TOKEN"), ("owner-a", "OTHER")):
        with pytest.raises(SecretDecryptError):
            box.decrypt(owner, name, ct, nonce)
    with pytest.raises(SecretDecryptError, match="SECRET_KEY"):
        SecretBox.from_secret_key("k2").decrypt("owner-a", "TOKEN", ct, nonce)


def test_same_value_encrypts_differently_each_time() -> None:
    box = SecretBox.from_secret_key("k1")
    assert box.encrypt("o", "N", "v")[0] != box.encrypt("o", "N", "v")[0]


def test_empty_secret_key_is_refused() -> None:
    with pytest.raises(SecretKeyMissing, match="SECRET_KEY not configured"):
        SecretBox.from_secret_key("")


def test_referenced_secrets_finds_literal_names_only() -> None:
    params = {
        "url": "http://x/{{ secrets.A }}",
        "headers": {"Authorization": "Bearer {{ secrets['B'] }}"},
        "body": ["{{ secrets[inputs.k] }}", "{{ inputs.secrets }}", "plain secrets.C"],
    }
    assert referenced_secrets(params, ["secrets.D == 'x'"]) == {"A", "B", "D"}
    assert referenced_secrets({"t": "{{ other.secrets.E }}"}) == set()


def test_secret_values_resolve_any_name_and_never_print_values() -> None:
    values = {"items": "v1-x", "get": "v2-x", "_x": "v3-x"}
    context = {"secrets": SecretValues({k: Secret(k, v) for k, v in values.items()})}
    with rendering():
        got = render_params("{{ secrets.items }} {{ secrets.get }}", context, credential=True)
        assert got == "v1-x v2-x"
        assert render_params("{{ secrets['_x'] }}", context, credential=True) == "v3-x"
        assert "v1" not in render_params("{{ secrets }}", context)


def test_mask_outcome_replaces_values_in_outputs_and_errors() -> None:
    context = {VALUES_KEY: ("longer-secret", "abc"), PROBLEMS_KEY: {}}
    done = mask_outcome(Done({"text": "x longer-secret y", "list": ["longer-secret"]}), context)
    assert done.output == {"text": "x *** y", "list": ["***"]}
    assert mask_outcome(Done("abc"), context).output == "abc"  # too short to mask safely
    failed = mask_outcome(Failure({"message": "from http://h/?t=longer-secret"}, False), context)
    assert failed.error == {"message": "from http://h/?t=***"} and failed.retryable is False
    plain = Done({"a": 1})
    assert mask_outcome(plain, {}) is plain


def test_secret_problem_names_the_secret() -> None:
    assert secret_problem({"secrets": SecretValues({})}) is None
    msg = secret_problem({PROBLEMS_KEY: {"API": "secret 'API' is not defined for the run's owner"}})
    assert msg is not None and "'API'" in msg


def test_render_fails_non_retryably_when_a_referenced_secret_is_missing() -> None:
    import flowstudio.nodes.text  # noqa: F401 -- registers `template`

    spec = registry.get("template")
    assert spec is not None
    context = {
        "secrets": SecretValues({}),
        PROBLEMS_KEY: {"API": "secret 'API' is not defined for the run's owner"},
    }
    with pytest.raises(NodeError, match="'API' is not defined") as info:
        render_node_params(spec, {"template": "{{ secrets.API }}"}, context)
    assert info.value.retryable is False
