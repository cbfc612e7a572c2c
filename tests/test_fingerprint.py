"""The fingerprint of an idempotent request hashes the canonical JSON of its body without building it whole: the
digest is the same as that of the canonical bytes for every JSON document, long strings with escapes, non-ASCII text
and odd numbers included, so records stored by earlier versions still match their repeats."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import Principal
from gateway.services.idempotency import IdempotencyContext, canonical_json, hash_canonical_json

LONG = 5000  # over the length from which strings are hashed as they are

# Long strings of every kind: needing no escape, or with a quote, a backslash or a control character somewhere in
# them, or not ASCII.
long_strings = st.builds(
    lambda prefix, middle, suffix: prefix * (LONG // max(len(prefix), 1) + 1) + middle + suffix,
    st.sampled_from(["A", "QUJD", "+/=", "a b", "Đ", "x\u00e9"]),
    st.sampled_from(["", '"', "\\", "\n", "\x00", "\x1f", "\x7f", "ệ", "\u2028", "\ud7ff"]),
    st.text(max_size=5),
)
# Long strings that are strict base64 (padded or not), as a file's content is, or nearly so.
long_base64 = st.builds(
    lambda data, tail: base64.b64encode(data).decode("ascii") + tail,
    st.binary(min_size=3100, max_size=3110),
    st.sampled_from(["", "\n", "=", '"', "\\", "\x00", "A", "ệ"]),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | long_strings | long_base64
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def fed(document: Any) -> str:
    digest = hashlib.sha256()
    hash_canonical_json(digest, document)
    return digest.hexdigest()


@settings(max_examples=300, deadline=None)
@given(documents)
def test_the_fed_digest_is_the_digest_of_the_canonical_bytes(document: Any) -> None:
    assert fed(document) == hashlib.sha256(canonical_json(document)).hexdigest()


def test_a_dossier_with_a_file_keeps_the_fingerprint_of_the_canonical_body() -> None:
    content = base64.b64encode(bytes(range(256)) * 4000).decode("ascii")
    body = {
        "procedure_code": "1.000001",
        "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        "components": [{"code": "TP1", "filename": "đơn.pdf", "content_base64": content}],
        "extra": {"a": [1, 2.5, None, True], "z": '"quoted"\n'},
    }
    context = IdempotencyContext.of(Principal("portal"), "key-1", "POST", "/api/v1/dossiers", body)
    assert context is not None
    expected = hashlib.sha256(b"POST /api/v1/dossiers\n" + canonical_json(body)).hexdigest()
    assert context.fingerprint == expected
    changed = {**body, "components": [{**body["components"][0], "content_base64": content[:-4] + "AAAA"}]}
    other = IdempotencyContext.of(Principal("portal"), "key-1", "POST", "/api/v1/dossiers", changed)
    assert other is not None and other.fingerprint != context.fingerprint


@settings(max_examples=200, deadline=None)
@given(documents)
def test_a_small_body_and_a_large_one_are_fingerprinted_alike(document: Any) -> None:
    # Bodies without files are fingerprinted from their canonical JSON built whole, the others as it is built: a key
    # stored either way must match its repeat.
    keys = [
        IdempotencyContext.of(Principal("portal"), "k", "POST", "/api/v1/dossiers", document, large=large)
        for large in (False, True)
    ]
    assert keys[0] is not None and keys[1] is not None
    assert keys[0].fingerprint == keys[1].fingerprint
    assert keys[0].fingerprint == hashlib.sha256(b"POST /api/v1/dossiers\n" + canonical_json(document)).hexdigest()


def test_documents_json_itself_would_refuse_are_refused_alike() -> None:
    for document in ({1: "a", "b": 2}, {"a": {1, 2}}, [object()]):
        try:
            expected: str | type[Exception] = hashlib.sha256(canonical_json(document)).hexdigest()
        except (TypeError, ValueError) as exc:
            expected = type(exc)
        try:
            got: str | type[Exception] = fed(document)
        except (TypeError, ValueError) as exc:
            got = type(exc)
        assert got == expected
