"""Streaming parsers for batch uploads: request body chunks in, one normalized JSON object per item out.

`parser_for(content_type)` picks one parser by media type; the API feeds it every body chunk with
`feed(chunk)` and ends with `close()`. Both return a list of items, each either the item's inputs as
compact JSON bytes (re-encoded by msgspec, so PostgreSQL's jsonb accepts it unchanged) or a `Bad(path,
reason)`. Nothing ever holds more than the current chunk plus one unfinished item (capped at
MAX_ITEM_BYTES), so an upload of any length parses in bounded memory.
- `JsonLinesParser`: one object per line; paths `body[line N]` (1-based physical lines).
- `JsonArrayParser`: a JSON list split into its top-level elements by a small byte scanner that tracks
  strings and nesting (never decoding the whole list); each element is decoded alone; paths `body[i]`.
- `CsvParser`: incremental UTF-8 decoding, lines joined into records by quote parity (so quoted
  newlines work), each record parsed with the csv module; the first record is the header; every row
  becomes `{header: value}` with string values; paths `body[line N]` (the record's first line).
- `MultipartParser`: a push multipart parser forwards the `file` field to one of the above, chosen by
  the part's Content-Type or file extension.
A structural error that makes the rest unreadable (unclosed JSON list, bad CSV header, invalid UTF-8)
is reported once and the parser then ignores the rest of the body.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from flowstudio.jsonlimits import depth_reason, json_problem, needs_walk

MAX_ITEM_BYTES = 1024 * 1024
MAX_DEPTH = 1000  # the list scanner's own limit; each item is then held to ITEM_MAX_DEPTH
ITEM_MAX_DEPTH = 64  # as the API's default JSON_MAX_DEPTH (flowstudio.jsonlimits)

JSONL_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
JSON_TYPES = frozenset({"application/json"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
MULTIPART = "multipart/form-data"


@dataclass(frozen=True, slots=True)
class Bad:
    path: str
    reason: str


Item = bytes | Bad


class ItemParser(Protocol):
    def feed(self, chunk: bytes) -> list[Item]: ...

    def close(self) -> list[Item]: ...


def normalize(raw: bytes | str, path: str) -> Item:
    """Decode one item; it must be a JSON object. Returns compact JSON bytes or a Bad."""
    try:
        value = msgspec.json.decode(raw, type=dict[str, Any])
    except RecursionError:
        return Bad(path, depth_reason(ITEM_MAX_DEPTH))
    except msgspec.ValidationError:
        return Bad(path, "expected a JSON object (the run's inputs)")
    except msgspec.DecodeError as exc:
        return Bad(path, f"invalid JSON: {exc}")
    return encode_inputs(value, path)


def encode_inputs(value: dict[str, Any], path: str) -> Item:
    encoded = msgspec.json.encode(value)
    if needs_walk(encoded, ITEM_MAX_DEPTH):
        problem = json_problem(value, path, ITEM_MAX_DEPTH)
        if problem is not None:
            return Bad(*problem)
    return encoded


class JsonLinesParser:
    def __init__(self, max_item: int = MAX_ITEM_BYTES) -> None:
        self.max_item = max_item
        self.buf = bytearray()
        self.line = 0
        self.skipping = False  # inside an over-long line that was already reported

    def _line(self, raw: bytes, out: list[Item]) -> None:
        self.line += 1
        if self.skipping:
            self.skipping = False
            return
        raw = raw.strip()
        if raw:
            out.append(normalize(raw, f"body[line {self.line}]"))

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        self.buf += chunk
        start = 0
        while (nl := self.buf.find(b"\n", start)) >= 0:
            self._line(bytes(self.buf[start:nl]), out)
            start = nl + 1
        del self.buf[:start]
        if len(self.buf) > self.max_item:
            if not self.skipping:
                out.append(Bad(f"body[line {self.line + 1}]", f"line longer than {self.max_item}"))
            self.skipping = True
            self.buf.clear()
        return out

    def close(self) -> list[Item]:
        out: list[Item] = []
        if self.buf:
            self._line(bytes(self.buf), out)
            self.buf.clear()
        return out


_STRUCT = re.compile(rb'[\[\]{},"]')
_IN_STRING = re.compile(rb'["\\]')
_SPACE = b" \t\r\n"


class JsonArrayParser:
    """Splits `[elem, elem, ...]` into elements without decoding the whole list."""

    def __init__(self, max_item: int = MAX_ITEM_BYTES) -> None:
        self.max_item = max_item
        self.buf = bytearray()
        self.pos = 0  # scan position in buf
        self.start = 0  # where the current element begins in buf
        self.open: list[bytes] = []  # brackets opened inside the current element
        self.in_string = False
        self.state = "open"  # open -> items -> closed, or failed
        self.index = 0

    def _fail(self, path: str, reason: str, out: list[Item]) -> None:
        out.append(Bad(path, reason))
        self.state = "failed"
        self.buf.clear()
        self.pos = self.start = 0

    def _element(self, end: int, closing: bool, out: list[Item]) -> None:
        raw = bytes(self.buf[self.start : end]).strip(_SPACE)
        path = f"body[{self.index}]"
        if not raw:
            if closing and self.index == 0:
                return  # `[]`
            out.append(Bad(path, "missing element (stray comma)"))
        else:
            out.append(normalize(raw, path))
        self.index += 1

    def _scan(self, out: list[Item]) -> None:
        buf = self.buf
        while self.pos < len(buf) and self.state == "items":
            if self.in_string:
                m = _IN_STRING.search(buf, self.pos)
                if m is None:
                    self.pos = len(buf)
                    return
                if m.group() == b"\\":
                    if m.end() >= len(buf):
                        self.pos = m.start()  # the escaped byte has not arrived yet
                        return
                    self.pos = m.end() + 1
                else:
                    self.in_string = False
                    self.pos = m.end()
                continue
            m = _STRUCT.search(buf, self.pos)
            if m is None:
                self.pos = len(buf)
                return
            c = m.group()
            self.pos = m.end()
            if c == b'"':
                self.in_string = True
            elif c in (b"[", b"{"):
                self.open.append(b"]" if c == b"[" else b"}")
                if len(self.open) > MAX_DEPTH:
                    self._fail(f"body[{self.index}]", "nested too deeply", out)
            elif self.open:
                if c != b"," and self.open.pop() != c:
                    self._fail(
                        f"body[{self.index}]", f"malformed JSON: unexpected '{c.decode()}'", out
                    )
            elif c == b"]":
                self._element(m.start(), True, out)
                self.state = "closed"
            elif c == b"}":
                self._fail(f"body[{self.index}]", "malformed JSON: unexpected '}'", out)
            else:  # a comma between top-level elements
                self._element(m.start(), False, out)
                self.start = self.pos

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        if self.state == "failed":
            return out
        self.buf += chunk
        if self.state == "open":
            stripped = self.buf.lstrip(_SPACE)
            if not stripped:
                self.buf.clear()
                return out
            if not stripped.startswith(b"["):
                self._fail("body", "expected a JSON list of objects (or send JSONL/CSV)", out)
                return out
            self.buf = bytearray(stripped[1:])
            self.state = "items"
        self._scan(out)
        if self.state == "items":
            del self.buf[: self.start]
            self.pos -= self.start
            self.start = 0
            if len(self.buf) > self.max_item:
                self._fail(f"body[{self.index}]", f"element longer than {self.max_item} bytes", out)
        elif self.state == "closed":
            rest = bytes(self.buf[self.pos :]).strip(_SPACE)
            self.buf.clear()
            self.pos = self.start = 0
            if rest:
                self._fail("body", "unexpected data after the JSON list", out)
        return out

    def close(self) -> list[Item]:
        out: list[Item] = []
        if self.state == "open":
            out.append(Bad("body", "empty body: expected a JSON list of objects"))
        elif self.state == "items":
            self._fail("body", "unexpected end of data: the JSON list is not closed", out)
        return out


class CsvParser:
    def __init__(self, max_item: int = MAX_ITEM_BYTES) -> None:
        self.max_item = max_item
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self.record = ""  # lines of the current record (a quoted field may span lines)
        self.quotes = 0
        self.line = 0
        self.record_line = 1
        self.header: list[str] | None = None
        self.failed = False

    def _fail(self, path: str, reason: str, out: list[Item]) -> None:
        out.append(Bad(path, reason))
        self.failed = True
        self.text = self.record = ""

    def _row(self, record: str, out: list[Item]) -> None:
        path = f"body[line {self.record_line}]"
        try:
            row = next(csv.reader((record,)))
        except (csv.Error, StopIteration) as exc:
            out.append(Bad(path, f"invalid CSV: {exc}"))
            return
        if not row or (len(row) == 1 and not row[0].strip()):
            return  # blank line
        if self.header is None:
            names = [h.strip() for h in row]
            if any(not h for h in names) or len(set(names)) != len(names):
                self._fail(path, "header must name every column once", out)
                return
            self.header = names
            return
        if len(row) != len(self.header):
            out.append(Bad(path, f"expected {len(self.header)} fields (header), got {len(row)}"))
            return
        out.append(encode_inputs(dict(zip(self.header, row, strict=True)), path))

    def _add_line(self, line: str, out: list[Item]) -> None:
        self.line += 1
        if not self.record:
            self.record_line = self.line
        self.record += line
        self.quotes += line.count('"')
        if self.quotes % 2 == 0:  # outside quotes: the record is complete
            record, self.record, self.quotes = self.record, "", 0
            self._row(record, out)
        elif len(self.record) > self.max_item:
            self._fail(f"body[line {self.record_line}]", "unterminated quoted field", out)

    def _lines(self, final: bool, out: list[Item]) -> None:
        text, start = self.text, 0
        while not self.failed:
            nl = text.find("\n", start)
            if nl >= 0:
                line, start = text[start : nl + 1], nl + 1
            elif final and start < len(text):
                line, start = text[start:], len(text)
            else:
                break
            self._add_line(line, out)
        if self.failed:
            return
        self.text = text[start:]
        if final and self.record:
            self._fail(f"body[line {self.record_line}]", "unterminated quoted field", out)
        elif len(self.text) > self.max_item:
            self._fail(f"body[line {self.line + 1}]", f"line longer than {self.max_item}", out)

    def _decode(self, chunk: bytes, final: bool, out: list[Item]) -> bool:
        try:
            self.text += self.decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            line = self.line + self.text.count("\n") + exc.object[: exc.start].count(b"\n") + 1
            self._fail(f"body[line {line}]", "not valid UTF-8", out)
            return False
        return True

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        if not self.failed and self._decode(chunk, False, out):
            self._lines(False, out)
        return out

    def close(self) -> list[Item]:
        out: list[Item] = []
        if not self.failed and self._decode(b"", True, out):
            self._lines(True, out)
            if self.header is None and not self.failed:
                out.append(Bad("body", "empty CSV: expected a header line and rows"))
        return out


def _part_parser(segment: MultipartSegment) -> ItemParser:
    media = (segment.content_type or "").split(";")[0].strip().lower()
    name = (segment.filename or "").lower()
    if media in CSV_TYPES or name.endswith(".csv"):
        return CsvParser()
    if media in JSON_TYPES or name.endswith(".json"):
        return JsonArrayParser()
    return JsonLinesParser()  # .jsonl, .ndjson, text/plain, octet-stream


class MultipartParser:
    """Forwards the `file` field of a multipart/form-data body; other fields are ignored."""

    def __init__(self, boundary: str) -> None:
        self.parser = PushMultipartParser(boundary, max_segment_count=16)
        self.inner: ItemParser | None = None
        self.in_file = False
        self.done = False  # the file part ended
        self.failed = False

    def _events(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        if self.failed:
            return out
        try:
            for event in self.parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    self.in_file = event.name == "file" and self.inner is None
                    if self.in_file:
                        self.inner = _part_parser(event)
                elif event is None:
                    if self.in_file and self.inner is not None:
                        out += self.inner.close()
                        self.done = True
                    self.in_file = False
                elif self.in_file and self.inner is not None:
                    out += self.inner.feed(bytes(event))
        except (ParserError, ParserLimitReached) as exc:
            out.append(Bad("body", f"invalid multipart/form-data: {exc}"))
            self.failed = True
        return out

    def feed(self, chunk: bytes) -> list[Item]:
        return self._events(chunk) if chunk else []

    def close(self) -> list[Item]:
        out = self._events(b"")
        if self.failed:
            return out
        if self.inner is None:
            out.append(Bad("body.file", "missing: send the items as a `file` field"))
        elif not self.done:
            out.append(Bad("body", "invalid multipart/form-data: incomplete body"))
        return out


def parser_for(content_type: str) -> ItemParser | None:
    """The parser for a request Content-Type, or None if the type is not supported."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media in JSONL_TYPES:
        return JsonLinesParser()
    if media in JSON_TYPES:
        return JsonArrayParser()
    if media in CSV_TYPES:
        return CsvParser()
    if media == MULTIPART:
        match = re.search(r'boundary="?([^";]+)"?', params)
        return MultipartParser(match.group(1)) if match else None
    return None
