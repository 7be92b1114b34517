"""The template sandbox under attack: opaque secrets, size/loop/time limits, masking helpers.

Each masking bypass found in issue 9 (`| reverse`, `| list | join`, slicing, `.upper()`, `~` into a
non-credential field, `| string | list`) is replayed and must be a template error that never holds
the value; each stall (`'x' * 10**8`, nested `range(10000)` loops) must be refused by a limit. The
stream masker must mask a secret split over any token boundary; the log record factory must mask the
message and the traceback of a record.
"""

from __future__ import annotations

import logging
import threading

import pytest

import flowstudio.nodes.text  # noqa: F401 -- registers `template`
from flowstudio.nodes import registry
from flowstudio.nodes.registry import NodeError
from flowstudio.nodes.sandbox import Secret
from flowstudio.nodes.templating import TemplateError, evaluate, render_fields, rendering
from flowstudio.secretmask import StreamMasker, in_flight, install_log_filter
from flowstudio.worker.context import render_node_params
from flowstudio.worker.secret_values import SecretValues

VALUE = "sk-live alpha beta gamma"  # multi-word, as in the streamed-answer attack


def ctx() -> dict[str, object]:
    return {"secrets": SecretValues({"K": Secret("K", VALUE)}), "inputs": {"xs": [1, 2, 3]}}


def render(field: str, template: str) -> str:
    with rendering(5):
        return str(render_fields({field: template}, ctx())[field])


BYPASSES = [
    "{{ secrets.K | reverse }}",
    "{{ secrets.K | list | join(' ') }}",
    "{{ secrets.K[0:5] }}",
    "{{ secrets.K.upper() }}",
    "{{ secrets.K | string | list }}",
    "{{ secrets.K | length }}",
    "{{ secrets.K == 'x' }}",
    "{{ secrets.K < 'm' }}",
    "{% for c in secrets.K %}{{ c }}{% endfor %}",
    "{{ secrets | list }}",
    "{{ ('x' ~ secrets.K) | reverse }}",
    "{% set x %}{{ secrets.K }}{% endset %}{{ x | list | join(' ') }}",
    "{{ ('x' ~ secrets.K)[0:9] }}",
    "{{ secrets.K | tojson }}",
]


@pytest.mark.parametrize("template", BYPASSES)
@pytest.mark.parametrize("field", ["prompt", "api_key"])
def test_masking_bypasses_are_template_errors_without_the_value(field: str, template: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(field, template)
    assert VALUE not in str(info.value) and "sk-live" not in str(info.value)


@pytest.mark.parametrize(
    "template", ["{{ secrets.K }}", "x{{ 'a' ~ secrets.K }}", "{{ secrets.K + '' }}"]
)
def test_a_secret_outside_a_credential_field_is_refused(template: str) -> None:
    with pytest.raises(TemplateError, match="outside a credential field") as info:
        render("url", template)
    assert VALUE not in str(info.value)


def test_a_secret_whole_or_concatenated_works_in_credential_fields() -> None:
    assert render("api_key", "{{ secrets.K }}") == VALUE
    assert render("api_key", "{{ 'Bearer ' ~ secrets.K }}") == "Bearer " + VALUE
    assert render("api_key", "Bearer {{ secrets.K }}") == "Bearer " + VALUE
    assert render("api_key", "{{ 'Bearer ' + secrets.K }}") == "Bearer " + VALUE
    with rendering():
        out = render_fields(
            {
                "headers": {"Authorization": "Bearer {{ secrets.K }}"},
                "auth": {"token": "{{ secrets.K }}"},
            },
            ctx(),
        )
    assert out == {"headers": {"Authorization": "Bearer " + VALUE}, "auth": {"token": VALUE}}


def test_expressions_never_yield_a_secret() -> None:
    for expr in ("secrets.K", "secrets.K == 'x'", "secrets.K | length > 3"):
        with pytest.raises(TemplateError):
            evaluate(expr, ctx())


def test_template_misuse_fails_the_step_non_retryably_naming_the_node() -> None:
    spec = registry.get("template")
    assert spec is not None
    with pytest.raises(NodeError) as info:
        render_node_params(spec, {"template": "{{ secrets.K | reverse }}"}, ctx(), 5, "leak")
    assert info.value.retryable is False
    assert "node 'leak'" in info.value.message and VALUE not in info.value.message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ('x' * 10**8) | length }}",
        "{{ [1] * 10**8 }}",
        "{{ 2 ** 10000000 }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x' | center(10**9) }}",
        "{% set s = 'x' * 1000 %}{{ s | replace('x', 'y' * 10000) }}",
        "{{ range(10**6) | list | length }}",
        "{% set s = 'x' * 900000 %}{{ s ~ s }}",
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "{% for i in range(9000) %}{{ 'x' * 200 }}{% endfor %}",  # 1.8 MB of output
        "{{ ([[1] * 1000] * 1000) | sum(start=[]) }}",
        "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    ],
)
def test_resource_attacks_are_refused_by_a_limit(template: str) -> None:
    with pytest.raises(TemplateError, match=r"limit|iterations|over|timeout"):
        render("prompt", template)


def test_ordinary_templates_still_render() -> None:
    assert render("prompt", "{% for x in inputs.xs %}{{ x }},{% endfor %}") == "1,2,3,"
    assert render("prompt", "{{ range(3) | map('string') | join('-') }}") == "0-1-2"
    assert render("prompt", "{{ 'ab' * 3 }} {{ '%05d' % 42 }} {{ '{:>4}'.format(7) }}") == (
        "ababab 00042    7"
    )
    assert evaluate("inputs.xs | length > 2", ctx()) is True


def test_rendering_stops_at_its_deadline() -> None:
    template = "{% for i in range(10000) %}{{ inputs.xs | join(',') }}{% endfor %}"
    with rendering(0.0), pytest.raises(TemplateError, match="timeout"):
        render_fields({"prompt": template}, ctx())


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_stream_masker_masks_a_secret_split_across_any_tokens(size: int) -> None:
    text = f"the key is {VALUE} and again {VALUE}."
    masker = StreamMasker([VALUE])
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    sent = [masker.feed(p) for p in pieces] + [masker.end()]
    assert "".join(sent) == "the key is *** and again ***."
    for i in range(len(sent)):  # no prefix of what left contains the value, at any time
        assert VALUE not in "".join(sent[: i + 1])
        assert "alpha beta" not in "".join(sent[: i + 1])


def test_log_records_of_a_step_in_flight_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    install_log_filter()
    log = logging.getLogger("flowstudio.test.mask")
    with in_flight([VALUE]), caplog.at_level(logging.INFO):
        try:
            raise RuntimeError(f"boom with {VALUE}")
        except RuntimeError:
            log.exception("node failed: %s", VALUE)
        t = threading.Thread(target=lambda: log.warning("other thread %s", VALUE))
        t.start()
        t.join()
    text = caplog.text
    assert "node failed: ***" in text and "boom with ***" in text and "other thread ***" in text
    assert VALUE not in text


def test_saving_a_secret_outside_a_credential_field_is_refused_with_its_path() -> None:
    import json

    from flowstudio.flows.validate import validate_definition

    def node(nid: str, ntype: str, params: dict[str, object]) -> dict[str, object]:
        return {"id": nid, "type": ntype, "data": {"params": params}}

    defn = {
        "nodes": [
            node("in", "input", {}),
            node(
                "h",
                "http_request",
                {
                    "url": "http://x/{{ secrets.A }}",
                    "headers": {"Authorization": "Bearer {{ secrets.OK }}"},
                    "auth": {"type": "bearer", "token": "{{ secrets.OK }}"},
                    "body": "{{ secrets.C | reverse }}",
                },
            ),
            node("c", "condition", {"expression": "secrets.D == 'x'"}),
            node(
                "m",
                "map",
                {
                    "items": "inputs.xs",
                    "body": {"type": "template", "params": {"template": "{{ secrets.E }}"}},
                },
            ),
        ],
        "edges": [{"source": "in", "target": t} for t in ("h", "c", "m")],
    }
    _, errors = validate_definition(json.dumps(defn).encode())
    assert {(e.path, e.node_id) for e in errors} == {
        ("definition.nodes[1].data.params.url", "h"),
        ("definition.nodes[1].data.params.body", "h"),
        ("definition.nodes[2].data.params.expression", "c"),
        ("definition.nodes[3].data.params.body.params.template", "m"),
    }
    assert all("credential field" in e.reason for e in errors)
