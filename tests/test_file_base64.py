"""Files' base64 (:func:`gateway.services.files.decode_base64`, through :func:`~gateway.services.files.prepare_files`):
strict base64, line breaks and spaces allowed wherever they fall, padding never in excess, the size cap counted on
the decoded bytes (line breaks never push a file over it), anything else refused with one problem on the field."""

from __future__ import annotations

import base64

import pytest

from gateway.services.files import FileIn, TooLargeError, decode_base64, prepare_files

DATA = bytes(range(256)) * 12  # 3,072 bytes


async def prepared(content: str, max_bytes: int = len(DATA)) -> tuple[bytes | None, list[dict[str, str]]]:
    files, errors = await prepare_files([("f", "TP1", FileIn(content_base64=content))], max_bytes=max_bytes)
    return (files[0].data if files else None), errors


@pytest.mark.parametrize(
    "content",
    [
        base64.b64encode(DATA).decode(),
        base64.encodebytes(DATA).decode(),  # MIME: a line break every 76 characters and at the end
        base64.encodebytes(DATA).decode().replace("\n", "\r\n"),
        " ".join(base64.b64encode(DATA).decode()[i : i + 4] for i in range(0, 4096, 4)),
        "\t" + base64.b64encode(DATA).decode() + "\n\n",
    ],
    ids=["plain", "mime", "crlf", "spaced", "framed"],
)
async def test_base64_with_or_without_white_space_is_decoded_to_the_same_bytes(content: str) -> None:
    data, errors = await prepared(content)
    assert errors == [] and data == DATA


@pytest.mark.parametrize(
    "content",
    [
        base64.b64encode(DATA).decode()[:-1],  # padding missing
        base64.b64encode(DATA[:-1]).decode() + "=",  # excess padding
        base64.b64encode(DATA).decode() + "=",  # padding where none is due
        base64.b64encode(DATA).decode() + "\n=\n",
        "QQ==QQ==",  # data after the padding
        "=QUJD",
        base64.b64encode(DATA).decode().replace("A", "-", 1),  # the URL-safe alphabet
        base64.b64encode(DATA).decode()[:100] + "é" + base64.b64encode(DATA).decode()[100:],
        "QUJD\x00",
        "not*base64!",
    ],
    ids=[
        "unpadded",
        "over-padded",
        "padded-needlessly",
        "padded-after-a-break",
        "padding-inside",
        "padding-first",
        "url-safe",
        "non-ascii",
        "nul",
        "garbage",
    ],
)
async def test_anything_but_strict_base64_is_refused(content: str) -> None:
    data, errors = await prepared(content)
    assert data is None
    assert [(e["field"], "not valid base64" in e["message"]) for e in errors] == [("f.content_base64", True)]


async def test_the_cap_counts_decoded_bytes_not_line_breaks() -> None:
    mime = base64.encodebytes(DATA).decode()
    assert len(mime) // 4 * 3 > len(DATA) + 3  # over the cap if its line breaks were counted
    assert (await prepared(mime, max_bytes=len(DATA)))[0] == DATA
    data, errors = await prepared(mime, max_bytes=len(DATA) - 1)
    assert data is None and "larger than" in errors[0]["message"]
    data, errors = await prepared(base64.b64encode(DATA).decode(), max_bytes=len(DATA) - 1)
    assert data is None and "larger than" in errors[0]["message"]


async def test_empty_content_is_refused() -> None:
    data, errors = await prepared("")
    assert data is None and "empty" in errors[0]["message"]


def test_the_decoder_tells_too_large_from_malformed() -> None:
    assert decode_base64(base64.encodebytes(DATA).decode(), max_bytes=len(DATA)) == DATA
    with pytest.raises(TooLargeError):
        decode_base64(base64.encodebytes(DATA).decode(), max_bytes=len(DATA) - 1)
    with pytest.raises(ValueError, match="not valid base64") as refused:
        decode_base64(base64.b64encode(DATA).decode() + "=", max_bytes=len(DATA))
    assert not isinstance(refused.value, TooLargeError)
    assert decode_base64("", max_bytes=1) == b""
