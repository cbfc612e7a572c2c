"""The agency endpoint registry: each agency's one-stop system (một cửa điện tử) and how to reach it.

An agency registers a document (``docs/api.md``, Administration; the same body for
``POST /api/v1/admin/agencies`` and ``dvc-gateway agency register --file``). :func:`validate_registration` checks
it and refuses with every problem found (:class:`RegistrationError`, ``errors`` for a 422, ``str()`` one line):

- the shape: known fields only, an official agency code, ``protocol`` ``rest`` (``endpoint`` required) or ``soap``
  (``wsdl`` required), ``auth`` of a known type with its fields, ``status_updates`` ``callback`` or ``poll`` (with
  ``interval_seconds`` from 30 to 86400);
- every URL (``endpoint``, ``wsdl``, ``auth.token_url``): http(s) only, https unless ``[registry]
  allow_insecure_http``, no credentials in it, and no server-side request forgery: loopback and private addresses
  (names resolving there included) only with ``[registry] allow_private_endpoints``, link-local and cloud metadata
  addresses never, and never the gateway's own listening address (see :mod:`gateway.registry_urls`; offline, with
  ``resolve=False``, names are not resolved and are screened where the gateway connects);
- secrets (``auth.password``, ``auth.token``, ``auth.client_secret``, ``auth.key_password``) as ``env:NAME`` or
  ``file:PATH`` references, unless ``[registry] strict_secrets = false``. The stored document keeps the references;
  secrets are resolved only when the gateway calls the agency;
- every procedure named must be in the catalogue, and (given the catalogue's competent agencies) name the agency
  among its competent ones;
- ``auth.type = "wsse"`` (a WS-Security UsernameToken: ``username``, ``password`` reference, optional ``digest``)
  only for protocol ``soap``; a ``soap`` registration's ``mapping`` (``operations``, ``fields``, ``statuses``,
  ``soap_version``, ``port``) is checked as :class:`adapters.onestop.soap.SoapMapping` reads it.

Then, when every static check passed, ``check_endpoint`` (a callable given by the caller, see
:func:`endpoint_checker`) may reach the endpoint: for ``soap``, the WSDL is loaded and checked with
:func:`adapters.onestop.wsdlcheck.check_wsdl` and the registration refused with its one-line message when the
(mapped) operations are missing. The API and the CLI pass one; unit tests without a server leave it out.
"""

from __future__ import annotations

import asyncio
import functools
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from sqlalchemy import Text as SqlText
from sqlalchemy import bindparam, cast, select
from sqlalchemy.orm import Session

from adapters import jsonguard

from .catalogue import AgencyCode, Code, Name
from .config import ConfigError, resolve_secret
from .registry_urls import RegistrySettings, check_url
from .store.memo import memo
from .store.models import Agency
from .validation import validation_errors

__all__ = [
    "SECRET_FIELDS",
    "AgencyExistsError",
    "EndpointCheck",
    "EndpointChecker",
    "Registration",
    "RegistrationError",
    "RegistrySettings",
    "check_endpoint",
    "endpoint_checker",
    "get_agency",
    "list_agencies",
    "load_registration_file",
    "register",
    "registered_document",
    "remove_agency",
    "validate_registration",
]

POLL_MIN_SECONDS = 30
POLL_MAX_SECONDS = 86400
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)


class RegistrationError(ValueError):
    """A registration refused: ``errors`` is ``[{"field", "message"}]`` (API 422 details), ``str()`` is one line."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors))


class AgencyExistsError(RegistrationError):
    """The agency code is already registered and the caller did not ask to replace it (API 409)."""


# --- the document ---------------------------------------------------------------------------------------------------

Secret = Annotated[StrictStr, Field(min_length=1)]
Text = Annotated[StrictStr, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAuth(_Strict):
    type: Literal["none"]


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: Text
    password: Secret


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: Secret


class OAuth2Auth(_Strict):
    """OAuth2 client credentials: the gateway fetches a token from ``token_url``."""

    type: Literal["oauth2"]
    token_url: Text
    client_id: Text
    client_secret: Secret
    scope: StrictStr | None = None


class MtlsAuth(_Strict):
    """Mutual TLS: ``cert`` and ``key`` are paths of PEM files on the gateway's host."""

    type: Literal["mtls"]
    cert: Text
    key: Text
    key_password: Secret | None = None


class WsseAuth(_Strict):
    """A WS-Security UsernameToken in every SOAP message (PasswordText, or PasswordDigest with ``digest``)."""

    type: Literal["wsse"]
    username: Text
    password: Secret
    digest: StrictBool = False


Auth = Annotated[NoAuth | BasicAuth | BearerAuth | OAuth2Auth | MtlsAuth | WsseAuth, Field(discriminator="type")]
AUTH_TYPES = ("none", "basic", "bearer", "oauth2", "mtls", "wsse")
SECRET_FIELDS = ("password", "token", "client_secret", "key_password")


class StatusUpdates(_Strict):
    mode: Literal["callback", "poll"] = "callback"
    interval_seconds: Annotated[StrictInt, Field(ge=POLL_MIN_SECONDS, le=POLL_MAX_SECONDS)] | None = None


class Registration(_Strict):
    """A registration document, checked for shape (see :func:`validate_registration` for the rest)."""

    code: AgencyCode
    name: Name
    protocol: Literal["rest", "soap"]
    #: The REST base URL; for SOAP, when given, it overrides the service address written in the WSDL.
    endpoint: StrictStr | None = None
    wsdl: StrictStr | None = None
    procedures: Annotated[list[Code], Field(min_length=1)]
    auth: Auth = Field(default_factory=lambda: NoAuth(type="none"))
    status_updates: StatusUpdates = Field(default_factory=StatusUpdates)
    #: Operation and field names of an agency system that differs from the reference contract
    #: (``docs/agency-rest-contract.md``).
    mapping: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        """The document as stored and shown: every field, secrets as the references given."""
        data = self.model_dump(mode="json")
        for key in ("auth", "status_updates"):  # optional fields left out are not written as nulls
            data[key] = {name: value for name, value in data[key].items() if value is not None}
        return data


# --- validation ----------------------------------------------------------------------------------------------------


def _shape_errors(exc: ValidationError) -> list[dict[str, str]]:
    problems = []
    for problem, error in zip(validation_errors(exc), exc.errors(include_url=False), strict=True):
        loc = error["loc"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = error.get("input", {}).get("type") if isinstance(error.get("input"), dict) else None
            problem = {
                "field": f"{problem['field']}.type",
                "message": "required field is missing"
                if tag is None
                else f"must be one of {', '.join(AUTH_TYPES)} (got {tag!r})",
            }
        elif loc and loc[0] == "auth" and len(loc) > 2:
            # Drop the discriminator pydantic puts in the location: auth.bearer.token -> auth.token.
            message = problem["message"]
            if loc[-1] in SECRET_FIELDS:  # never echo what was given as a secret
                message = message.split(" (got ", 1)[0]
            problem = {"field": ".".join(["auth", *map(str, loc[2:])]), "message": message}
        problems.append(problem)
    return problems


def _structure(reg: Registration) -> list[dict[str, str]]:
    problems = []
    if reg.protocol == "soap" and not reg.wsdl:
        problems.append({"field": "wsdl", "message": "required for protocol soap (the URL of the service's WSDL)"})
    if reg.protocol == "rest":
        if not reg.endpoint:
            problems.append({"field": "endpoint", "message": "required for protocol rest (the system's base URL)"})
        if reg.wsdl:
            problems.append({"field": "wsdl", "message": "only for protocol soap"})
    if reg.auth.type == "wsse" and reg.protocol != "soap":
        problems.append({"field": "auth.type", "message": "wsse (a WS-Security UsernameToken) only for protocol soap"})
    if reg.protocol == "soap" and reg.mapping is not None:
        from adapters.onestop.soap import SoapMapping  # zeep: imported only when a SOAP mapping is checked

        try:
            SoapMapping.parse(reg.mapping)
        except ValueError as exc:
            reason = str(exc).removeprefix("mapping: ").removeprefix("mapping.")
            problems.append({"field": "mapping", "message": reason})
    updates = reg.status_updates
    if updates.mode == "poll" and updates.interval_seconds is None:
        problems.append(
            {
                "field": "status_updates.interval_seconds",
                "message": f"required for mode poll ({POLL_MIN_SECONDS} to {POLL_MAX_SECONDS} seconds)",
            }
        )
    if updates.mode == "callback" and updates.interval_seconds is not None:
        problems.append({"field": "status_updates.interval_seconds", "message": "only for mode poll"})
    seen: set[str] = set()
    for code in reg.procedures:
        if code in seen:
            problems.append({"field": "procedures", "message": f"duplicate procedure {code}"})
        seen.add(code)
    return problems


def _secrets(reg: Registration, settings: RegistrySettings) -> list[dict[str, str]]:
    problems = []
    for name in SECRET_FIELDS:
        value = getattr(reg.auth, name, None)
        if value is None:
            continue
        field = f"auth.{name}"
        if value.startswith("env:"):
            if _ENV_NAME_RE.match(value[4:]) is None:
                problems.append({"field": field, "message": f"{value!r} does not name an environment variable"})
        elif value.startswith("file:"):
            if not value[5:].strip():
                problems.append({"field": field, "message": "file: reference without a path"})
        elif settings.strict_secrets:
            problems.append(
                {
                    "field": field,
                    "message": "inline secret refused: give an env:NAME or file:PATH reference "
                    "([registry] strict_secrets = true)",
                }
            )
    return problems


def _procedures(reg: Registration, known: Collection[str] | Mapping[str, Collection[str]]) -> list[dict[str, str]]:
    problems = []
    unknown = [code for code in dict.fromkeys(reg.procedures) if code not in known]
    if unknown:
        message = f"not in the procedure catalogue: {', '.join(unknown)} (import it first)"
        problems.append({"field": "procedures", "message": message})
    if isinstance(known, Mapping):
        foreign = [code for code in dict.fromkeys(reg.procedures) if code in known and reg.code not in known[code]]
        if foreign:
            listed = "; ".join(f"{code} (the catalogue names {', '.join(known[code]) or 'none'})" for code in foreign)
            message = (
                f"{reg.code} is not a competent agency of {listed}, so every dossier for it would be refused: add "
                "the agency to the procedure's agencies in the catalogue and import it again"
            )
            problems.append({"field": "procedures", "message": message})
    return problems


def validate_registration(
    doc: dict[str, Any],
    *,
    settings: RegistrySettings,
    known_procedures: Collection[str] | Mapping[str, Collection[str]],
    check_endpoint: Callable[[Registration], str | None] | None = None,
    resolve: bool = True,
) -> Registration:
    """The registration ``doc`` describes, or :class:`RegistrationError` with every problem found.

    ``known_procedures`` are the catalogue's procedure codes; given as a mapping (code → the procedure's competent
    agencies, as :func:`gateway.catalogue.competent_agencies` reads them), a procedure whose competent agencies do not
    include the registering one is refused too, since the gateway would refuse every dossier for it. ``check_endpoint``
    (see :func:`endpoint_checker`), called only when every static check passed, answers ``None`` when the endpoint is
    usable or a one-line reason to refuse it (reported on ``wsdl`` for SOAP, else ``endpoint``). ``resolve=False``
    (an offline registration) screens the URLs without asking DNS (:func:`gateway.registry_urls.check_url`).
    """
    if not isinstance(doc, dict):
        kind = type(doc).__name__
        raise RegistrationError([{"field": "", "message": f"expected a JSON object/TOML table, got a {kind}"}])
    try:
        reg = Registration.model_validate(doc)
    except ValidationError as exc:
        raise RegistrationError(_shape_errors(exc)) from None
    problems = _structure(reg) + _secrets(reg, settings)
    urls = {"endpoint": reg.endpoint, "wsdl": reg.wsdl, "auth.token_url": getattr(reg.auth, "token_url", None)}
    for field, url in urls.items():
        if url is not None:
            problems += check_url(field, url, settings, resolve=resolve)
    problems += _procedures(reg, known_procedures)
    if problems:
        raise RegistrationError(problems)
    if check_endpoint is not None:
        refusal = check_endpoint(reg)
        if refusal:
            field = "wsdl" if reg.protocol == "soap" else "endpoint"
            raise RegistrationError([{"field": field, "message": refusal}])
    return reg


# --- reaching the endpoint -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointCheck:
    """What reaching a registered endpoint found: ``message`` is one line, for an operator."""

    ok: bool
    message: str


#: ``check_endpoint`` of :func:`validate_registration`: ``None`` when usable, else the reason to refuse.
EndpointChecker = Callable[[Registration], str | None]
CHECK_TIMEOUT_SECONDS = 10.0


def _checked_secret(reference: str) -> str:
    value = resolve_secret(reference, key="secret")
    return value or ""


async def check_endpoint(
    registration: Registration, *, settings: RegistrySettings, factory: Any = None
) -> EndpointCheck:
    """Reach ``registration``'s endpoint through ``factory`` (an :class:`adapters.http.ClientFactory`).

    ``soap``: the WSDL is loaded (never from the offline cache) and checked against the reference service and the
    registration's mapping (:func:`adapters.onestop.wsdlcheck.check_wsdl`). ``rest``: the status operation is asked
    about a dossier no system has: only a JSON answer with 2xx or the REST contract's 404 shows the service is there (a
    web server's 404 page, a redirect, refused credentials or a server error fail). Never raises for an unusable
    endpoint.
    """
    from adapters.errors import UpstreamError
    from adapters.http import default_factory, map_http_errors, settings_from_document
    from adapters.netguard import AddressPolicy
    from adapters.onestop.rest import RestMapping

    upstream, http_document = f"agency:{registration.code}", registration.document()
    if registration.auth.type == "wsse":  # in the SOAP header of operations, not on the WSDL's HTTP requests
        http_document["auth"] = {"type": "none"}
    try:
        for name in SECRET_FIELDS:
            reference = getattr(registration.auth, name, None)
            if isinstance(reference, str):
                _checked_secret(reference)
        client_settings, auth = settings_from_document(
            http_document,
            _checked_secret,
            address_policy=AddressPolicy(allow_private=settings.allow_private_endpoints),
            timeout_seconds=CHECK_TIMEOUT_SECONDS,
            connect_timeout_seconds=min(5.0, CHECK_TIMEOUT_SECONDS),
        )
    except (ConfigError, ValueError, KeyError) as exc:
        return EndpointCheck(False, f"cannot build a client from the registration: {exc}")
    factory = factory or default_factory
    if registration.protocol == "soap":
        from adapters.onestop.soap import WsdlLimits
        from adapters.onestop.wsdlcheck import check_wsdl

        assert registration.wsdl is not None
        names = ("max_document_bytes", "max_total_bytes", "max_documents", "load_timeout_seconds")
        result = await check_wsdl(
            registration.wsdl,
            factory=factory,
            settings=client_settings,
            mapping=registration.mapping,
            auth=auth,
            upstream=upstream,
            limits=WsdlLimits(**{name: getattr(settings, f"wsdl_{name}") for name in names}),
        )
        return EndpointCheck(result.ok, result.message)
    try:
        path = RestMapping.parse(registration.mapping).path("status", f"{registration.code}-000101-0000")
        async with factory.client(upstream, client_settings, auth=auth) as http:
            with map_http_errors(upstream):
                response = await http.get(path, headers={"Accept": "application/json"})
    except (UpstreamError, ConfigError, ValueError) as exc:
        return EndpointCheck(False, f"cannot reach {registration.endpoint}: {getattr(exc, 'message', exc)}")
    status, media = response.status_code, response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    answered = f"GET {response.request.url} answered HTTP {status}" + (f" ({media})" if media else "")
    if media.endswith(("/json", "+json")) and (response.is_success or status == 404):
        return EndpointCheck(True, f"OK: {answered}" + (" for an unknown dossier" if status == 404 else ""))
    why = "credentials refused" if status in (401, 403) else "a server error" if status >= 500 else "no agency service"
    return EndpointCheck(False, f"{answered}: {why} (expected JSON with 2xx, or 404 for an unknown dossier)")


def endpoint_checker(settings: RegistrySettings, *, factory: Any = None) -> EndpointChecker:
    """A ``check_endpoint`` for :func:`validate_registration`: SOAP registrations get their WSDL loaded and checked.

    Synchronous: it runs :func:`check_endpoint` on an event loop of its own, so call it where no loop is running
    (the CLI, or a worker thread as the API does). REST endpoints are not reached at registration (an agency may
    register before its system is up); ``dvc-gateway agency check`` reaches them.
    """

    def check(registration: Registration) -> str | None:
        if registration.protocol != "soap":
            return None
        result = asyncio.run(check_endpoint(registration, settings=settings, factory=factory))
        return None if result.ok else result.message

    return check


# --- storage -------------------------------------------------------------------------------------------------------


_AGENCIES = Agency.__table__


def register(session: Session, registration: Registration, *, replace: bool = False) -> bool:
    """Store ``registration``: ``True`` when created, ``False`` when it replaced the earlier one.

    A code already registered is refused (:class:`AgencyExistsError`) unless ``replace`` says to update it.
    """
    row = session.get(Agency, registration.code)
    if row is not None and not replace:
        raise AgencyExistsError(
            [{"field": "code", "message": f"agency {registration.code} is already registered (replace it explicitly)"}]
        )
    values = {"name": registration.name, "protocol": registration.protocol, "document": registration.document()}
    if row is None:
        session.add(Agency(code=registration.code, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()
    memo(session).pop(_REGISTERED_MEMO, None)
    return row is None


#: Memo key (:mod:`gateway.store.memo`): whether agencies are registered, by code, as read in this transaction.
_REGISTERED_MEMO = "registered_agencies"
#: Whether an agency is registered (a plain statement, built once).
_REGISTERED = select(_AGENCIES.c.code).where(_AGENCIES.c.code == bindparam("code"))


def is_registered(session: Session, code: str) -> bool:
    """Whether agency ``code`` is registered: read once per transaction (:func:`register` and :func:`remove_agency`
    forget what was read)."""
    known: dict[str, bool] = memo(session).setdefault(_REGISTERED_MEMO, {})
    found = known.get(code)
    if found is None:
        found = known[code] = session.execute(_REGISTERED, {"code": code}).first() is not None
    return found


def get_agency(session: Session, code: str) -> Registration | None:
    row = session.get(Agency, code)
    return None if row is None else Registration.model_validate(row.document)


def registered_document(session: Session, code: str) -> tuple[dict[str, Any], str] | None:
    """The registration of agency ``code`` as a document (as :meth:`Registration.document` gives it) and its
    protocol, None when it is not registered; :class:`pydantic.ValidationError` when the stored one is invalid.

    What deliveries read for every message: each distinct stored document is validated once (the answer is shared:
    read it, never change it). It reads what is written: a registration changed in ``session`` is seen once flushed."""
    stored = session.connection().execute(_STORED_DOCUMENT, {"code": code}).scalar()
    return None if stored is None else _validated_document(stored)


#: The stored registration document's JSON text, as it is (the key of the validated documents' cache); built once.
_STORED_DOCUMENT = select(cast(_AGENCIES.c.document, SqlText)).where(_AGENCIES.c.code == bindparam("code"))


@functools.lru_cache(maxsize=256)
def _validated_document(stored: str) -> tuple[dict[str, Any], str]:
    registration = Registration.model_validate_json(stored)
    return registration.document(), registration.protocol


def list_agencies(session: Session) -> list[Registration]:
    """Every registered agency, by code."""
    return [Registration.model_validate(row.document) for row in session.scalars(select(Agency).order_by(Agency.code))]


def remove_agency(session: Session, code: str) -> bool:
    """Remove agency ``code``: ``False`` when it was not registered."""
    row = session.get(Agency, code)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    memo(session).pop(_REGISTERED_MEMO, None)
    return True


# --- files -----------------------------------------------------------------------------------------------------------


def load_registration_file(path: str | Path) -> dict[str, Any]:
    """The registration document in ``path``: ``.json`` or ``.toml``, any other suffix recognised by content."""
    file = Path(path)

    def refuse(message: str) -> RegistrationError:
        return RegistrationError([{"field": "", "message": f"{file}: {message}"}])

    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise refuse("no such file") from None
    except UnicodeDecodeError:
        raise refuse("not UTF-8 text") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror}") from None
    fmt = {".json": "json", ".toml": "toml"}.get(file.suffix.lower())
    if fmt is None:
        fmt = "json" if text.lstrip("\ufeff \t\r\n").startswith("{") else "toml"
    if fmt == "json":
        try:
            data = jsonguard.loads(text, unique_keys=True)
        except (ValueError, RecursionError) as exc:
            raise refuse(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise refuse(f"expected a JSON object, got a {type(data).__name__}")
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise refuse(f"not valid TOML: {exc}") from None
