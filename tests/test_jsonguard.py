"""``adapters.jsonguard``: JSON as RFC 8259 defines it, with strings a database can store."""

from __future__ import annotations

import json

import pytest

from adapters import jsonguard


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": Infinity}', "Infinity is not JSON"),
        ("[-Infinity]", "-Infinity is not JSON"),
        ('{"a": 1e999}', "the number 1e999 is out of range"),
        ('{"a": [0.5, -1.5e400]}', "the number -1.5e400 is out of range"),
        ('{"a": 1' + "0" * 400 + ".0}", "is out of range"),
        ('{"a": "x\\u0000y"}', "a: holds the character U+0000"),
        ('{"a": {"b\\u0000": 1}}', "a.b\\x00: its name holds the character U+0000"),
        ('[[["ok", "deep \\u0000"]]]', "[0][0][1]: holds the character U+0000"),
        ('{"a": "\\ud800"}', "a: holds half of a UTF-16 surrogate pair"),
        ('{"\\udc00": "low half alone"}', "\\udc00: its name holds half of a UTF-16 surrogate pair"),
        ('{"a": "' + "x" * 10 + "\\u0000" + '"}', "U+0000"),
    ],
)
def test_what_json_or_a_database_cannot_carry_is_refused(text: str, reason: str) -> None:
    assert json.loads(text) is not None  # the standard library takes every one of them
    with pytest.raises(ValueError) as refused:
        jsonguard.loads(text)
    assert reason in str(refused.value)


def test_what_json_carries_is_read_as_the_standard_library_reads_it() -> None:
    text = (
        '{"name": "Nguy\\u1ec5n V\\u0103n A", "emoji": "\\ud83d\\ude00", "n": [0, -1, 1.5, 1e308, -0.0, '
        + "9" * 300
        + '], "nested": {"ok": true, "none": null}, "backslash": "\\\\u0000"}'
    )
    assert jsonguard.loads(text) == json.loads(text)
    assert jsonguard.loads(text.encode("utf-16")) == json.loads(text)  # JSON's other encodings, as json reads them
    assert jsonguard.loads(text)["backslash"] == "\\u0000"  # an escaped backslash: text, not U+0000


def test_text_no_database_stores_says_where_it_is() -> None:
    with pytest.raises(jsonguard.UnstorableText) as refused:
        jsonguard.loads('{"components": [{"code": "TP1"}, {"code": "TP2", "name": "x\\u0000"}]}')
    assert (refused.value.field, refused.value.reason) == (
        "components[1].name",
        "holds the character U+0000, which cannot be stored",
    )


def test_repeated_keys_only_when_asked() -> None:
    assert jsonguard.loads('{"a": 1, "a": 2}') == {"a": 2}  # as the standard library: the last one
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        jsonguard.loads('{"b": {"a": 1, "a": 2}}', unique_keys=True)
