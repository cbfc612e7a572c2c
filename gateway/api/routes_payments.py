"""The payment platform's notification (IPN): ``GET|POST /api/v1/payments/notify`` (``docs/api.md``).

Public, but authenticated by the provider's signature (no bearer token): the ``vnp_*`` parameters come in the query
string (``GET``, as VNPay sends them) or, for ``POST``, in the query string and a form-encoded or JSON-object body.
The answer is always ``200`` with the provider's JSON, ``{"RspCode", "Message"}``:

====  ===========================================================================================
00    recorded (paid: fees paid, dossier resumed, agency told; or failed: a new payment is made)
01    unknown reference
02    already confirmed (a repeated notification: nothing changes)
04    amount (or currency) mismatch: nothing changes
97    bad signature (or another merchant's): nothing changes; logged without the parameters
99    anything else (an unreadable notification, the gateway's secret unavailable)
====  ===========================================================================================

With ``[payment] base_url`` unset (payment off, or the national payment platform only) the endpoint answers ``404``
in the API's error shape and changes nothing.

The national payment platform notifies ``POST /api/v1/payments/notify/national`` with a JSON object
(``MaThamChieu``, ``MaGiaoDich``, ``SoTien``, ``TrangThai``, ``ThoiGianGD``, ``MaXacThuc``), authenticated by its
``MaXacThuc``, and is answered ``200`` ``{"MaLoi": ...}`` with the same codes; ``404`` without ``[payment.national]``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adapters import jsonguard
from adapters.payment import InvalidNotification, InvalidSignature, IpnCode, Notification, ipn_answer
from adapters.payment.national_wire import notification_answer

from ..bootstrap.upstreams import build_national_provider, build_provider, build_signer
from ..config import ConfigError
from ..services.payments import online_payment
from ..services.settlement import settle_notification
from .errors import ApiError
from .routes_common import clock, context_of_request, runtime_of
from .schemas import NationalPaymentNotificationAnswer, PaymentNotificationAnswer, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])
log = logging.getLogger("gateway.payments")

#: A notification is a few hundred bytes; anything much larger is not one.
_MAX_BODY = 16 * 1024


def _answer(code: IpnCode) -> JSONResponse:
    return JSONResponse(ipn_answer(code))


class _Malformed(Exception):
    pass


def _merge(params: dict[str, str], items: list[tuple[str, Any]]) -> None:
    for key, value in items:
        if not isinstance(value, str):
            raise _Malformed("parameter values must be strings")
        if key in params and params[key] != value:
            raise _Malformed(f"parameter {key} given twice")
        params[key] = value


async def _params(request: Request) -> dict[str, str]:
    """The notification's parameters (``_Malformed`` for a body that is not one)."""
    params: dict[str, str] = {}
    _merge(params, list(request.query_params.multi_items()))
    if request.method != "POST":
        return params
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise _Malformed("body too large for a notification")
    if not body.strip():
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            document = jsonguard.loads(body)
        except (ValueError, RecursionError):
            raise _Malformed("malformed JSON") from None
        if not isinstance(document, dict):
            raise _Malformed("expected a JSON object")
        _merge(params, list(document.items()))
    elif kind == "application/x-www-form-urlencoded":
        form = await request.form()
        _merge(params, list(form.multi_items()))
    else:
        raise _Malformed(f"unsupported content type {kind or 'none'}")
    return params


_NOTIFY_DOC: dict[str, Any] = {
    "summary": "Payment notification (IPN) from the payment platform, authenticated by its signature",
    "response_model": None,
    "responses": {
        200: {"model": PaymentNotificationAnswer, "description": "The provider's answer (every notification)"},
        404: {
            **error_responses(404)[404],
            "description": "The VNPay-style payment platform is not configured on this gateway",
        },
    },
}


@router.post("/notify", operation_id="payments_notify_post", **_NOTIFY_DOC)
@router.get("/notify", operation_id="payments_notify_get", **_NOTIFY_DOC)
async def notify(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    settings = runtime.settings.payment
    if settings is None or not settings.vnpay_configured:
        raise ApiError(404, "the VNPay-style payment platform is not configured on this gateway")
    try:
        params = await _params(request)
    except _Malformed as exc:
        log.warning("payment notification refused: malformed", extra={"reason": str(exc)})
        return _answer(IpnCode.OTHER)
    provider = build_provider(settings)
    try:
        notification = provider.verify_notification(params)
    except InvalidSignature as exc:
        # Never the parameters: they may carry the payer's bank details; the reason says what was wrong.
        log.warning("payment notification refused: bad signature", extra={"reason": str(exc)})
        return _answer(IpnCode.BAD_SIGNATURE)
    except InvalidNotification as exc:
        log.warning("payment notification refused: unreadable", extra={"reason": str(exc)})
        return _answer(IpnCode.OTHER)
    except ConfigError as exc:
        log.error("payment notification not handled: %s", exc)
        return _answer(IpnCode.OTHER)
    code = await settle_notification(
        context_of_request(request),
        notification,
        currency=params.get("vnp_CurrCode"),
        online=online_payment(settings, build_signer(settings)),
        now=clock(request),
    )
    level = logging.INFO if code in (IpnCode.OK, IpnCode.ALREADY_CONFIRMED) else logging.WARNING
    log.log(
        level,
        "payment notification answered",
        extra={"reference": notification.reference, "rsp_code": code.value, "success": notification.success},
    )
    return _answer(code)


async def _national_params(request: Request) -> dict[str, Any]:
    """The national platform's notification: a JSON object (``_Malformed`` otherwise)."""
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise _Malformed("body too large for a notification")
    try:
        document = jsonguard.loads(body)
    except (ValueError, RecursionError):
        raise _Malformed("malformed JSON") from None
    if not isinstance(document, dict):
        raise _Malformed("expected a JSON object")
    return document


@router.post(
    "/notify/national",
    operation_id="payments_notify_national",
    summary="Payment notification from the national payment platform, authenticated by its MaXacThuc",
    response_model=None,
    responses={
        200: {"model": NationalPaymentNotificationAnswer, "description": "The platform's answer (every notification)"},
        404: {**error_responses(404)[404], "description": "The national payment platform is not configured"},
    },
)
async def notify_national(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    settings = runtime.settings.payment
    if settings is None or settings.national is None:
        raise ApiError(404, "the national payment platform is not configured on this gateway")
    try:
        params = await _national_params(request)
        notification = build_national_provider(settings).verify_notification(params)
    except _Malformed as exc:
        log.warning("national payment notification refused: malformed", extra={"reason": str(exc)})
        return JSONResponse(notification_answer(IpnCode.OTHER))
    except InvalidSignature as exc:
        log.warning("national payment notification refused: bad MaXacThuc", extra={"reason": str(exc)})
        return JSONResponse(notification_answer(IpnCode.BAD_SIGNATURE))
    except (InvalidNotification, ConfigError) as exc:
        log.warning("national payment notification not handled", extra={"reason": str(exc)})
        return JSONResponse(notification_answer(IpnCode.OTHER))
    code = await _settle(request, notification, settings)
    return JSONResponse(notification_answer(code))


async def _settle(request: Request, notification: Notification, settings: Any) -> IpnCode:
    code = await settle_notification(
        context_of_request(request),
        notification,
        currency=None,
        online=online_payment(settings, build_signer(settings)),
        now=clock(request),
    )
    level = logging.INFO if code in (IpnCode.OK, IpnCode.ALREADY_CONFIRMED) else logging.WARNING
    log.log(
        level,
        "national payment notification answered",
        extra={"reference": notification.reference, "rsp_code": code.value, "success": notification.success},
    )
    return code
