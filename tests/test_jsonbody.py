"""adapters.jsonbody.encode: exactly json.dumps's bytes, long plain strings copied in whole."""

from __future__ import annotations

import base64
import json
import math
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import jsonbody
from adapters.jsonbody import encode


def dumped(value: Any, default: Any = None) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=default).encode("utf-8")


FILE = base64.b64encode(bytes(range(256)) * 40).decode("ascii")  # 13,656 characters of base64

#: Strings of every kind: short and long, plain and with what JSON escapes, beyond ASCII, the stand-in's own text.
texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="ABCabc019+/=", min_size=500, max_size=2000),
    st.builds(lambda head, tail: head + tail, st.text(alphabet="AZaz09+/", min_size=600, max_size=900), st.text()),
    st.sampled_from(["\x00jsonbody:0", "\x00jsonbody:1", "x" * 511, "x" * 512, "é" * 600, "\\" * 600, '"' * 600]),
    st.builds(lambda n, c: "A" * n + c + "A" * n, st.integers(256, 400), st.sampled_from(['"', "\\", "\n", "\x1f"])),
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(texts, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(values)
def test_the_bytes_are_json_dumps_own(value: Any) -> None:
    assert encode(value) == dumped(value)


def test_a_document_with_files_is_written_as_json_dumps_writes_it() -> None:
    document = {
        "code": "000.00.23.H38-261205-0001",
        "applicant": {"full_name": "Nguyễn Văn A", "note": 'say "hi"\n'},
        "components": [
            {"code": "TP1", "content_base64": FILE, "detached_signature_base64": None},
            {"code": "TP2", "content_base64": FILE[:600], "detached_signature_base64": FILE[::-1]},
        ],
        "fees": (),
        "extra": {"nested": [FILE, {"again": FILE}]},
    }
    assert encode(document) == dumped(document)
    assert json.loads(encode(document)) == json.loads(dumped(document))


def test_the_stand_ins_own_text_in_a_document_falls_back_to_json_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = {"file": FILE, "name": "a"}
    tricky = {"a": "\x00jsonbody:0", "file": FILE, "b": ["\x00jsonbody:0"]}
    expected = {id(plain): dumped(plain), id(tricky): dumped(tricky)}
    written_whole: list[Any] = []
    real_dumps = json.dumps

    def watched(value: Any, **kwargs: Any) -> str:
        if value is plain or value is tricky:
            written_whole.append(value)
        return real_dumps(value, **kwargs)

    monkeypatch.setattr(jsonbody.json, "dumps", watched)
    assert encode(plain) == expected[id(plain)]
    assert written_whole == []  # the file copied in, the rest written without it
    assert encode(tricky) == expected[id(tricky)]
    assert written_whole == [tricky]  # the stand-in's text was the document's own: written whole by json.dumps


def test_errors_and_defaults_are_json_dumps_own() -> None:
    def iso(value: Any) -> Any:
        if isinstance(value, date):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} values cannot be sent as JSON")

    with_date = {"file": FILE, "day": date(2026, 12, 5)}
    assert encode(with_date, default=iso) == dumped(with_date, iso)
    for bad, error in (
        ({"file": FILE, "x": math.nan}, ValueError),
        ({"file": FILE, "x": {1, 2}}, TypeError),
        ({"x": {1, 2}}, TypeError),
        ({(1, 2): FILE}, TypeError),
    ):
        with pytest.raises(error) as ours:
            encode(bad)
        with pytest.raises(error) as theirs:
            dumped(bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="set values cannot be sent"):
        encode({"file": FILE, "x": {1}}, default=iso)
    circular: list[Any] = [FILE]
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        encode(circular)
    deep: Any = FILE
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):
        encode(deep)
