"""The streaming batch-upload parsers: items and error paths come out the same however the body is
split into chunks, and malformed input becomes `Bad(path, reason)`, never an exception."""

from __future__ import annotations

import msgspec
import pytest

from flowstudio.api.batch_items import (
    Bad,
    CsvParser,
    ItemParser,
    JsonArrayParser,
    JsonLinesParser,
    parser_for,
)


def parse(parser: ItemParser, body: bytes, step: int) -> list[bytes | Bad]:
    out: list[bytes | Bad] = []
    for i in range(0, len(body), step):
        out += parser.feed(body[i : i + step])
    return out + parser.close()


def decoded(items: list[bytes | Bad]) -> list[object]:
    return [i if isinstance(i, Bad) else msgspec.json.decode(i) for i in items]


@pytest.mark.parametrize("step", [1, 2, 7, 4096])
def test_json_list_is_split_into_elements_whatever_the_chunking(step: int) -> None:
    body = b' [ {"a": "x,]}\\"\\\\"}, {"b": [1, {"c": 2}]} ,{}\n]  \n'
    assert decoded(parse(JsonArrayParser(), body, step)) == [
        {"a": 'x,]}"\\'},
        {"b": [1, {"c": 2}]},
        {},
    ]


def test_json_list_errors_carry_the_element_index() -> None:
    items = parse(JsonArrayParser(), b'[1, , {"a": 1}, {"a": }]', 3)
    assert [i.path for i in items if isinstance(i, Bad)] == ["body[0]", "body[1]", "body[3]"]
    assert items[2] == b'{"a":1}'


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"a": 1}', "expected a JSON list"),
        (b'[{"a": 1}', "not closed"),
        (b"[{}] trailing", "after the JSON list"),
        (b"", "empty body"),
        (b"[{}}]", "unexpected '}'"),
        (b'[{"a": 1]}', "unexpected ']'"),
    ],
)
def test_json_list_structural_errors(body: bytes, reason: str) -> None:
    bad = [i for i in parse(JsonArrayParser(), body, 5) if isinstance(i, Bad)]
    assert len(bad) == 1 and reason in bad[0].reason


def test_oversized_json_element_is_refused_without_buffering_it() -> None:
    parser = JsonArrayParser(max_item=100)
    items = parse(parser, b'[{"a": "' + b"x" * 1000 + b'"}, {}]', 10)
    assert len(items) == 1 and isinstance(items[0], Bad) and "longer" in items[0].reason
    assert len(parser.buf) == 0


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_jsonl_lines_are_items_and_errors_name_the_line(step: int) -> None:
    body = b'{"a": 1}\n\n[1]\n{"b":\n{"c": "\\u0000"}\r\n{"d": 2}'
    items = parse(JsonLinesParser(), body, step)
    assert decoded(items) == [
        {"a": 1},
        Bad("body[line 3]", "expected a JSON object (the run's inputs)"),
        Bad("body[line 4]", items[2].reason if isinstance(items[2], Bad) else ""),
        Bad("body[line 5].c", "NUL characters (\\u0000) are not supported"),
        {"d": 2},
    ]


@pytest.mark.parametrize("step", [1, 3, 4096])
def test_csv_rows_become_objects_keyed_by_the_header(step: int) -> None:
    body = 'name,text\r\nada,"hi, ""x""\nnext"\r\n\r\nbob,2,3\n"é",z'.encode()
    assert decoded(parse(CsvParser(), body, step)) == [
        {"name": "ada", "text": 'hi, "x"\nnext'},
        Bad("body[line 5]", "expected 2 fields (header), got 3"),
        {"name": "é", "text": "z"},
    ]


@pytest.mark.parametrize(
    "body, path, reason",
    [
        (b"a,a\n1,2\n", "body[line 1]", "header"),
        (b'a,b\n"1,2\n', "body[line 2]", "unterminated"),
        (b"\xef\xbb\xbfa\n\xff\n", "body[line 2]", "UTF-8"),
        (b"", "body", "empty CSV"),
    ],
)
def test_csv_structural_errors(body: bytes, path: str, reason: str) -> None:
    bad = [i for i in parse(CsvParser(), body, 4) if isinstance(i, Bad)]
    assert len(bad) == 1 and bad[0].path == path and reason in bad[0].reason


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_multipart_file_field_is_parsed_by_its_type(step: int) -> None:
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="note"\r\n\r\nignored\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="in.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\n1,2\n3,4\r\n--XX--\r\n"
    )
    parser = parser_for("multipart/form-data; boundary=XX")
    assert parser is not None
    assert decoded(parse(parser, body, step)) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_multipart_without_a_file_field_is_an_error() -> None:
    parser = parser_for('multipart/form-data; boundary="XX"')
    assert parser is not None
    body = b'--XX\r\nContent-Disposition: form-data; name="f"\r\n\r\nzzz\r\n--XX--\r\n'
    assert parse(parser, body, 4096) == [
        Bad("body.file", "missing: send the items as a `file` field")
    ]


def test_parser_is_chosen_by_content_type() -> None:
    assert isinstance(parser_for("application/json; charset=utf-8"), JsonArrayParser)
    assert isinstance(parser_for("application/x-ndjson"), JsonLinesParser)
    assert isinstance(parser_for("application/jsonl"), JsonLinesParser)
    assert isinstance(parser_for("text/csv"), CsvParser)
    assert parser_for("text/plain") is None
    assert parser_for("multipart/form-data") is None  # no boundary
