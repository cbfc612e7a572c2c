"""The inner part of the configuration: its one error, the value types every section model uses (secret references,
paths relative to the configuration file, URLs, numbers), the :class:`Section` base, reading the TOML file with its
``DVC_GATEWAY_<SECTION>__<KEY>`` overrides, and the one-line ``[section] key: what is wrong`` message.

It imports nothing of the gateway: the section models are in :mod:`gateway.sections`, the flows' ``settings``
modules and :mod:`gateway.settings`. :func:`read_signing` reads the ``[signing]`` section alone, for ``verify``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError
from signing.limits import DEFAULT_BUDGET, DEFAULT_LIMITS, Budget, Limits, MiB
from signing.settings import TrustSettings

__all__ = [
    "BASE_DIR",
    "CONFIG_ENV",
    "ENV_PREFIX",
    "ConfigError",
    "ConfigPath",
    "EnvironmentOverrides",
    "Flag",
    "NonNegativeNumber",
    "PathList",
    "PositiveInt",
    "PositiveNumber",
    "RawConfiguration",
    "SecretRef",
    "Section",
    "SigningSection",
    "Text",
    "WebUrl",
    "parse_section",
    "read_configuration",
    "read_signing",
    "resolve_secret",
    "validation_message",
]

ENV_PREFIX = "DVC_GATEWAY_"
CONFIG_ENV = "DVC_GATEWAY_CONFIG"
#: The validation context key holding the directory relative paths start from (the configuration file's).
BASE_DIR = "base_dir"

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)


SectionT = TypeVar("SectionT", bound=BaseModel)


# --------------------------------------------------------------------------------------------------------------------
# Secrets


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    return context.get(BASE_DIR) if isinstance(context, Mapping) else None


def _read_file(path: str) -> bytes:
    """The whole content of the file ``path``. A secret's file is read at every request that uses it (so a rotated
    secret is used at once and none is kept): plain system calls cost a third of a buffered file object's."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(descriptor, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def _read_secret(reference: str, where: str, base_dir: Path | None) -> str:
    if reference.startswith("env:"):
        name = reference[4:]
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    if reference.startswith("file:"):
        path = reference[5:]
        if base_dir is not None and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        try:
            return _read_file(path).decode("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    return reference


def _reference_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string (a literal, env:NAME, file:PATH)"
    if value.startswith("env:") and _ENV_NAME_RE.match(value[4:]) is None:
        return "env: must be followed by an environment variable name"
    if value == "file:":
        return "file: must be followed by a path"
    return None


class SecretRef:
    """A secret as configured: ``env:NAME``, ``file:PATH`` (relative to the configuration file's directory) or the
    literal value. Only :meth:`resolve` reads it; ``repr``, ``str`` and dumps show ``***`` whatever it is."""

    __slots__ = ("_base_dir", "_reference")

    def __init__(self, reference: str, base_dir: Path | None = None) -> None:
        problem = _reference_problem(reference)
        if problem is not None:
            raise ValueError(problem)
        self._reference = reference
        self._base_dir = base_dir

    @property
    def kind(self) -> str:
        """``env``, ``file`` or ``literal``."""
        for kind in ("env", "file"):
            if self._reference.startswith(f"{kind}:"):
                return kind
        return "literal"

    @property
    def reference(self) -> str:
        """The text as configured (a literal secret itself): for checking its form, never for a log or a message."""
        return self._reference

    def resolve(self, where: str = "secret") -> str:
        """The secret, read now; :class:`ConfigError` (``where: why``) when the variable or file is missing."""
        return _read_secret(self._reference, where, self._base_dir)

    def __repr__(self) -> str:
        return "SecretRef('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretRef):
            return NotImplemented
        return (self._reference, self._base_dir) == (other._reference, other._base_dir)

    def __hash__(self) -> int:
        return hash((self._reference, self._base_dir))

    @classmethod
    def _validate(cls, value: Any, info: ValidationInfo) -> SecretRef:
        if isinstance(value, SecretRef):
            return value
        problem = _reference_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return cls(value, _base_dir(info))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "description": "a literal, env:NAME or file:PATH"}


def resolve_secret(value: str | None, *, key: str = "secret") -> str | None:
    """The secret a reference names (``env:NAME``, ``file:PATH``, or the literal itself), for references kept outside
    the configuration file (agency registrations, command-line options); relative files start from the current
    directory."""
    return None if value is None else _read_secret(value, key, None)


# --------------------------------------------------------------------------------------------------------------------
# Value types


def _config_path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value:
        path = Path(value)
    else:
        raise ValueError("must be a path (a non-empty string)")
    path = path.expanduser()
    base = _base_dir(info)
    return base / path if base is not None and not path.is_absolute() else path


def _config_paths(value: Any, info: ValidationInfo) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str | Path) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str | Path) and str(v) for v in items):
        raise ValueError("must be a path or a list of paths")
    return tuple(_config_path(item, info) for item in items)


def _web_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    return value


#: A path; relative ones start from the configuration file's directory (the ``base_dir`` validation context).
ConfigPath = Annotated[Path, PlainValidator(_config_path, json_schema_input_type=str), PlainSerializer(str)]
#: One path or a list of them, as a tuple.
PathList = Annotated[
    tuple[Path, ...],
    PlainValidator(_config_paths, json_schema_input_type=list[str]),
    PlainSerializer(lambda paths: [str(path) for path in paths]),
]
#: An absolute http:// or https:// URL without credentials.
WebUrl = Annotated[str, Strict(), AfterValidator(_web_url)]
PositiveNumber = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegativeNumber = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]


class Section(BaseModel):
    """A configuration section: typed, frozen, refusing keys it does not know.

    With ``blank_means_unset`` an empty string stands for a key not given (the integrations' optional URLs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    blank_means_unset: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _drop_blanks(cls, data: Any) -> Any:
        if cls.blank_means_unset and isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value != ""}
        return data


class SigningSection(Section):
    """``[signing]``: the trust anchors, intermediate certificates and CRLs (files or directories, relative to the
    configuration file's directory), whether revocation is fetched online, and the fetches' timeout.

    It is defined here, with the value types, because :func:`read_signing` reads it too (``verify`` loads nothing
    else of the configuration); :mod:`gateway.sections` holds it with the other core sections."""

    trust_anchors: PathList = ()
    intermediates: PathList = ()
    crls: PathList = ()
    online_revocation: Flag = False
    timeout_seconds: PositiveNumber = 10.0
    #: At intake, a valid signature by someone other than the applicant: "warn" (a warning on the component) or
    #: "require" (the component keeps ``originals_check_required: true``).
    signer_must_match_applicant: Literal["warn", "require"] = "warn"
    #: Validation budgets: size caps checked before parsing, and memory and time per document.
    max_document_mib: PositiveNumber = DEFAULT_LIMITS.max_document_bytes / MiB
    max_signature_mib: PositiveNumber = DEFAULT_LIMITS.max_signature_contents_hex / 2 / MiB
    max_detached_signature_mib: PositiveNumber = DEFAULT_LIMITS.max_cms_signature_bytes / MiB
    memory_budget_mib: PositiveNumber = DEFAULT_BUDGET.memory_bytes / MiB
    time_budget_seconds: PositiveNumber = DEFAULT_BUDGET.base_seconds
    time_budget_seconds_per_mib: NonNegativeNumber = DEFAULT_BUDGET.seconds_per_mib

    def trust_settings(self) -> TrustSettings:
        """The section as :meth:`signing.trust.TrustStore.load` and the verifier take it."""
        return TrustSettings(
            trust_anchors=self.trust_anchors,
            intermediates=self.intermediates,
            crls=self.crls,
            online_revocation=self.online_revocation,
            fetch_timeout_seconds=self.timeout_seconds,
            limits=Limits(
                max_document_bytes=int(self.max_document_mib * MiB),
                max_signature_contents_hex=int(self.max_signature_mib * 2 * MiB),
                max_cms_signature_bytes=int(self.max_detached_signature_mib * MiB),
            ),
            budget=Budget(
                memory_bytes=int(self.memory_budget_mib * MiB),
                base_seconds=self.time_budget_seconds,
                seconds_per_mib=self.time_budget_seconds_per_mib,
            ),
        )


# --------------------------------------------------------------------------------------------------------------------
# Reading: the file and the environment


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


class _OverrideNames(BaseSettings):
    """How override variables are named; :class:`EnvironmentOverrides` reads these two options."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__")


class EnvironmentOverrides(PydanticBaseSettingsSource):
    """The ``DVC_GATEWAY_<SECTION>__<KEY>`` variables of ``environ`` as nested tables, each value read as a TOML
    value when it parses as one, else as a string; ``origins`` says which variable set which key."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(_OverrideNames)
        self.environ = environ
        self.origins: dict[tuple[str, ...], str] = {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the values are read whole by __call__, not field by field

    def __call__(self) -> dict[str, Any]:
        prefix, delimiter = str(self.config.get("env_prefix") or ""), str(self.config.get("env_nested_delimiter") or "")
        data: dict[str, Any] = {}
        for name in sorted(self.environ):
            rest = name[len(prefix) :]
            if not name.startswith(prefix) or name == CONFIG_ENV or delimiter not in rest:
                continue
            path = tuple(part.lower() for part in rest.split(delimiter))
            if not all(path):
                continue
            node = data
            for depth, part in enumerate(path[:-1]):
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ConfigError(f"{name}: [{'.'.join(path[: depth + 1])}] is not a table")
                node = child
            node[path[-1]] = _parse_env_value(self.environ[name])
            self.origins[path] = name
        return data


def _merge(base: dict[str, Any], overlay: Mapping[str, Any], origins: Mapping[tuple[str, ...], str]) -> None:
    def walk(node: dict[str, Any], values: Mapping[str, Any], trail: tuple[str, ...]) -> None:
        for key, value in values.items():
            here = (*trail, key)
            if here in origins or not isinstance(value, dict):
                node[key] = value
                continue
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                origin = next(name for path, name in origins.items() if path[: len(here)] == here)
                raise ConfigError(f"{origin}: [{'.'.join(here)}] is not a table")
            walk(child, value, here)

    walk(base, overlay, ())


@dataclass(frozen=True)
class RawConfiguration:
    """The configuration as read: TOML tables with the overrides applied, the directory relative paths start from,
    and the environment variable behind each overridden key."""

    data: dict[str, Any]
    base_dir: Path
    origins: Mapping[tuple[str, ...], str] = field(default_factory=dict)


def _read_toml(path: str | Path) -> tuple[dict[str, Any], Path]:
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return data, file.resolve().parent


def read_configuration(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> RawConfiguration:
    """The file ``path`` (else ``$DVC_GATEWAY_CONFIG``, else none) with the overrides of ``environ``
    (``os.environ`` when not given)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    data, base_dir = _read_toml(path) if path else ({}, Path.cwd())
    overrides = EnvironmentOverrides(environ)
    _merge(data, overrides(), overrides.origins)
    return RawConfiguration(data, base_dir, dict(overrides.origins))


# --------------------------------------------------------------------------------------------------------------------
# Messages


_MESSAGES = {
    "missing": "is required",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
}
_BOUNDS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def _keys_at(model: type[BaseModel] | None, path: Sequence[Any]) -> list[str] | None:
    """The keys the model at ``path`` (below ``model``) knows, or ``None`` when that cannot be told."""
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        found = fields.get(part)
        model = _model_of(found.annotation) if found is not None else None
    return None if model is None else sorted(info.alias or name for name, info in model.model_fields.items())


def _what(problem: Mapping[str, Any], model: type[BaseModel] | None, *, top: bool) -> str:
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind == "extra_forbidden":
        what = "unknown section" if top else "unknown key"
        known = _keys_at(model, problem["loc"][:-1])
        return f"{what} (known: {', '.join(known)})" if known else what
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in _BOUNDS:
        name, text = _BOUNDS[kind]
        bound = context.get(name)
        return f"{text} {bound:g}" if isinstance(bound, int | float) else f"{text} {bound}"
    if kind == "literal_error":
        return f"must be one of {context.get('expected')}"
    message = str(problem["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[:1].lower() + message[1:]


def _key(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _origin(loc: tuple[Any, ...], origins: Mapping[tuple[str, ...], str]) -> str | None:
    """The environment variable that set the key at ``loc``, a key below it or the table above it."""
    if not loc:
        return None
    return next((name for path, name in origins.items() if path[: len(loc)] == loc or loc[: len(path)] == path), None)


def validation_message(
    error: ValidationError,
    *,
    model: type[BaseModel] | None = None,
    within: Sequence[str] = (),
    origins: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """``error`` as one line, ``[section] key: what is wrong`` for its first problem, then ``(and N more)``.

    ``model`` is the validated model (to list the keys it knows when given an unknown one), ``within`` the section
    it stands for when it is not the root, ``origins`` the environment variables behind overridden keys. Values are
    never quoted, so a secret given in the wrong place is not shown.
    """
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    loc = (*within, *first["loc"])
    what = _what(first, model, top=len(loc) == 1)
    if not loc:
        text = what
    else:
        key = _key(loc[1:])
        text = f"[{loc[0]}] {key}: {what}" if key else f"[{loc[0]}] {what}"
    origin = _origin(loc, origins or {})
    if origin is not None:
        text += f" (from {origin})"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return text


def parse_section(model: type[SectionT], data: Any, section: str, base_dir: Path | None = None) -> SectionT:
    """One section's model from its table (:class:`ConfigError` in one line), paths relative to ``base_dir``."""
    try:
        return model.model_validate({} if data is None else data, context={BASE_DIR: base_dir})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, model=model, within=(section,))) from None


def read_signing(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> SigningSection:
    """The ``[signing]`` section of the file ``path`` (else ``$DVC_GATEWAY_CONFIG``, else none) with the overrides of
    ``environ``, validated alone: ``verify`` reads no other section, so it needs nothing else of the configuration
    to be valid and loads no server or database module."""
    raw = read_configuration(path, environ)
    return parse_section(SigningSection, raw.data.get("signing"), "signing", raw.base_dir)
