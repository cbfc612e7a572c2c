"""``POST /api/v1/signatures/verify``: verify one uploaded document (portal), answer the signature report.

The body is JSON ``{"filename", "content_base64", "detached_signature_base64"}`` or a multipart form with the file
in ``file`` and, optionally, a detached CMS signature in ``signature``; nothing is stored. The answer is
:meth:`signing.SignatureReport.to_json`, the shape ``dvc-gateway verify --json`` gives per file.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.datastructures import UploadFile

from signing import Document

from ..auth import PORTAL, Principal
from ..services.files import TooLargeError, decode_base64, sanitise_filename
from ..validation import parse_model
from .errors import ApiError
from .routes_common import is_json, json_body_doc, media_type, parse_json, require, runtime_of
from .schemas import SignatureReport, error_responses

router = APIRouter(prefix="/api/v1/signatures", tags=["signatures"])


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: Annotated[StrictStr, Field(max_length=1000)] | None = None
    content_base64: StrictStr
    detached_signature_base64: StrictStr | None = None


#: The form variant: the document in ``file``, optionally a detached CMS signature in ``signature``.
_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the document"},
        "signature": {"type": "string", "format": "binary", "description": "a detached CMS signature over it"},
    },
    "required": ["file"],
    "additionalProperties": False,
}


def _body_doc() -> dict[str, Any]:
    document = json_body_doc(VerifyRequest)
    document["requestBody"]["content"]["multipart/form-data"] = {"schema": _FORM_SCHEMA}
    return document


def _decode(value: str, field: str, limit: int) -> bytes:
    try:
        data = decode_base64(value, max_bytes=limit)
    except TooLargeError:
        raise ApiError(413, f"{field}: the file is larger than {limit} bytes") from None
    except ValueError:
        raise ApiError(
            422, f"{field}: not valid base64", details=[{"field": field, "message": "not valid base64"}]
        ) from None
    if not data:
        raise ApiError(422, f"{field}: the file is empty", details=[{"field": field, "message": "the file is empty"}])
    return data


async def _upload(form: Any, field: str, limit: int, *, required: bool) -> tuple[bytes | None, str | None]:
    item = form.get(field)
    if item is None:
        if required:
            raise ApiError(422, f"{field}: a file is required", details=[{"field": field, "message": "required"}])
        return None, None
    if not isinstance(item, UploadFile):
        raise ApiError(422, f"{field}: expected a file upload", details=[{"field": field, "message": "not a file"}])
    data = await item.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"{field}: the file is larger than {limit} bytes")
    if not data and required:
        raise ApiError(422, f"{field}: the file is empty", details=[{"field": field, "message": "the file is empty"}])
    return data, item.filename


@router.post(
    "/verify",
    summary="Verify the signatures of one document",
    openapi_extra=_body_doc(),
    response_model=None,
    responses={
        200: {"model": SignatureReport, "description": "The signature report"},
        **error_responses(400, 401, 403, 413, 415, 422),
    },
)
async def verify_signature(
    request: Request, principal: Annotated[Principal, Depends(require(PORTAL))]
) -> dict[str, Any]:
    runtime = runtime_of(request)
    limit = runtime.max_file_bytes
    kind = media_type(request)
    if is_json(kind):
        body = parse_model(VerifyRequest, parse_json(await request.body()))
        data = _decode(body.content_base64, "content_base64", limit)
        signature = (
            _decode(body.detached_signature_base64, "detached_signature_base64", limit)
            if body.detached_signature_base64 is not None
            else None
        )
        filename = body.filename
    elif kind == "multipart/form-data":
        async with request.form(max_files=2, max_fields=4) as form:
            content, filename = await _upload(form, "file", limit, required=True)
            signature, _ = await _upload(form, "signature", limit, required=False)
        assert content is not None
        data = content
    else:
        raise ApiError(415, f"expected application/json or multipart/form-data, got {kind or 'none'}")
    name = sanitise_filename(filename, fallback_stem="document")
    report = await runtime.verifier.verify(Document(data, name, signature or None))
    request.app.state.metrics.verdicts.labels(verdict=report.verdict, source="verify").inc()
    return report.to_json()
