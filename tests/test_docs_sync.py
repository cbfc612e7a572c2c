"""The documentation in docs/ stays true as the code grows.

- every command, subcommand and option the command line defines appears in ``docs/cli.md``;
- every section and key of the typed settings appears in ``docs/configuration.md``;
- every route of the HTTP API appears in ``docs/api.md`` with its method;
- every field and value of the signature report's JSON appears in ``docs/signature-report.md``;
- every field of a procedure catalogue entry appears in ``docs/catalogue.md``;
- every outbox message kind and every status with its national code appears in ``docs/architecture.md``;
- every page of ``docs/`` is listed in ``docs/README.md``, and every relative link in ``README.md`` and ``docs/*.md``
  leads to an existing file (and heading, for links into the documentation's own pages).
"""

from __future__ import annotations

import argparse
import importlib
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from gateway.cli import COMMANDS
from gateway.settings import Settings
from signing.report import (
    Format,
    Indication,
    Revocation,
    SignatureReport,
    SignatureResult,
    Signer,
    SubIndication,
    Verdict,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _sections(text: str) -> list[tuple[str, str]]:
    """The ``## `` sections of a page: (heading line, body up to the next ``## `` heading)."""
    parts = re.split(r"(?m)^(?=## )", text)
    return [(part.splitlines()[0], part) for part in parts if part.startswith("## ")]


# --------------------------------------------------------------------------------------------------------------------
# The command line


def _full_parser() -> argparse.ArgumentParser:
    """Every command fully defined (the CLI itself defines only the one it runs)."""
    parser = argparse.ArgumentParser(prog="dvc-gateway")
    commands = parser.add_subparsers(dest="command")
    for module in dict.fromkeys(module for _, _, module in COMMANDS):
        importlib.import_module(f"gateway.commands.{module}").add_parser(commands)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def _commands() -> Iterator[tuple[str, list[str], set[str]]]:
    """(command, its subcommands, the options of the command and of its subcommands), for every command."""
    for name, parser in _subparsers(_full_parser()).items():
        children = _subparsers(parser)
        options = _options(parser).union(*(_options(child) for child in children.values()))
        yield name, sorted(children), options


def test_every_command_of_the_table_is_defined_by_its_module() -> None:
    defined = set(_subparsers(_full_parser()))
    assert {name for name, _, _ in COMMANDS} <= defined


@pytest.mark.parametrize(
    ("name", "subcommands", "options"),
    list(_commands()),
    ids=lambda v: str(sorted(v) if isinstance(v, set) else v)[:30],
)
def test_every_command_subcommand_and_option_is_in_cli_md(name: str, subcommands: list[str], options: set[str]) -> None:
    named = re.compile(r"`" + re.escape(name) + r"[` ]")
    sections = [body for heading, body in _sections(_text("cli.md")) if named.search(heading)]
    assert sections, f"docs/cli.md has no '## `{name}…`' section"
    body = "\n".join(sections)
    for sub in subcommands:
        assert re.search(rf"(?<![\w-]){re.escape(name)} {re.escape(sub)}(?![\w-])", body), (
            f"docs/cli.md does not describe '{name} {sub}'"
        )
    missing = sorted(option for option in options if not re.search(rf"{re.escape(option)}(?![\w-])", body))
    assert not missing, f"docs/cli.md, section of '{name}', does not mention {', '.join(missing)}"


# --------------------------------------------------------------------------------------------------------------------
# The configuration


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def _keys(model: type[BaseModel]) -> Iterator[str]:
    """The keys of a section as written in the file, those of its nested tables (``[[auth.tokens]]``) included."""
    for name, info in model.model_fields.items():
        yield info.alias or name
        nested = _model_of(info.annotation)
        if nested is not None:
            yield from _keys(nested)


def _configuration() -> list[tuple[str, str]]:
    pairs = []
    for name, info in Settings.model_fields.items():
        model = _model_of(info.annotation)
        assert model is not None, f"section {name} is not a model"
        pairs += [(info.alias or name, key) for key in dict.fromkeys(_keys(model))]
    return pairs


@pytest.mark.parametrize(("section", "key"), _configuration(), ids=lambda v: str(v))
def test_every_section_and_key_is_in_configuration_md(section: str, key: str) -> None:
    text = _text("configuration.md")
    marker = f"`[{section}]`"
    bodies = [body for heading, body in _sections(text) if marker in heading]
    rows = [line for line in text.splitlines() if line.startswith("|") and marker in line]
    assert bodies or rows, f"docs/configuration.md does not describe the section [{section}]"
    cell = re.compile(r"\|\s*`" + re.escape(key) + r"`\s*\|")
    assert any(cell.search(body) for body in bodies) or any(cell.search(row) for row in rows), (
        f"docs/configuration.md does not describe [{section}] {key} (a table row '| `{key}` |')"
    )


# --------------------------------------------------------------------------------------------------------------------
# The HTTP API


def _routes(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if hasattr(route, "original_router"):  # a router included as a whole (newer FastAPI)
            context = getattr(route, "include_context", None)
            yield from _routes(route.original_router.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif hasattr(route, "methods") and hasattr(route, "path"):
            for method in sorted(route.methods or ()):
                if method not in ("HEAD", "OPTIONS"):
                    yield method, prefix + route.path
        elif hasattr(route, "routes"):  # a mount
            yield from _routes(route.routes, prefix + getattr(route, "path", ""))


@pytest.fixture(scope="module")
def api_routes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    from gateway.api import create_app
    from tests.api_support import open_runtime

    with open_runtime("sqlite", tmp_path_factory.mktemp("docs-api")) as runtime:
        return sorted(set(_routes(create_app(runtime).routes)))


def test_every_route_is_in_api_md(api_routes: list[tuple[str, str]]) -> None:
    text = _text("api.md")
    assert len(api_routes) > 10
    missing = [
        f"{method} {path}"
        for method, path in api_routes
        if not re.search(rf"(?<![A-Z])(?:[A-Z]+\|)*{method}(?:\|[A-Z]+)* {re.escape(path)}(?![\w{{}}/-])", text)
    ]
    assert not missing, "docs/api.md does not describe: " + "; ".join(missing)


# --------------------------------------------------------------------------------------------------------------------
# The signature report


#: A fenced code block: an example does not document a field.
_CODE_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)


def _json_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _json_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_keys(item)


def test_every_field_and_value_of_the_signature_report_is_in_signature_report_md() -> None:
    text = _text("signature-report.md")
    result = SignatureResult(
        indication=Indication.TOTAL_PASSED,
        signer=Signer(common_name="A", organization="B", serial_number="C", identifiers={"tax_code": "1"}),
        issuer="D",
        signing_time=datetime(2026, 11, 23, tzinfo=UTC),
        chain=("E",),
    )
    document = SignatureReport(file="f.pdf", format=Format.PADES, signatures=(result,)).to_json()
    keys = set(_json_keys(document)) - set(result.signer.identifiers)
    undocumented = sorted(
        key for key in keys if not re.search(rf"`(?:[\w.]+\.)?{re.escape(key)}`", _CODE_BLOCK.sub("", text))
    )
    assert not undocumented, f"docs/signature-report.md does not describe the fields {undocumented}"
    values = [*Format, *Verdict, *Indication, *SubIndication, *Revocation]
    unnamed = sorted(str(value) for value in values if f"`{value}`" not in text)
    assert not unnamed, f"docs/signature-report.md does not name the values {unnamed}"


# --------------------------------------------------------------------------------------------------------------------
# The procedure catalogue


def test_every_field_of_a_catalogue_entry_is_in_catalogue_md() -> None:
    from gateway.catalogue import ProcedureSpec

    text = _CODE_BLOCK.sub("", _text("catalogue.md"))
    models = [ProcedureSpec, *(m for f in ProcedureSpec.model_fields.values() if (m := _model_of(f.annotation)))]
    fields = {info.alias or name for model in models for name, info in model.model_fields.items()}
    assert {"code", "processing_days", "must_be_signed", "amount"} <= fields
    assert sorted(field for field in fields if f"`{field}`" not in text) == []


# --------------------------------------------------------------------------------------------------------------------
# The outbox's message kinds and the status model


def test_every_outbox_message_kind_and_status_is_in_architecture_md() -> None:
    from gateway import messages
    from gateway.domain.status import NATIONAL_CODES

    text = _text("architecture.md")
    constants = [value for name, value in vars(messages).items() if name.isupper() and isinstance(value, str)]
    kinds = [value for value in constants if re.fullmatch(r"[a-z_]+\.[a-z_]+", value)]
    assert len(kinds) >= 7
    assert [kind for kind in kinds if f"| `{kind}` |" not in text] == []
    rows = [f"| `{status.value}` | {code} |" for status, code in NATIONAL_CODES.items()]
    assert [row for row in rows if row not in text] == []


# --------------------------------------------------------------------------------------------------------------------
# Links


_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor a heading gets (GitHub's rule: lower case, punctuation dropped, spaces as hyphens)."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for match in re.finditer(r"(?m)^#{1,6} (.+)$", text):
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path) -> Iterator[str]:
    text = _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    for match in _LINK.finditer(text):
        target = match.group(1)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not files
            yield target


def test_every_page_is_in_the_index() -> None:
    linked = {target.partition("#")[0] for target in _links(DOCS / "README.md")}
    pages = {page.name for page in DOCS.glob("*.md")} - {"README.md"}
    assert sorted(pages - linked) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_an_existing_file(page: Path) -> None:
    broken = []
    for target in _links(page):
        file_part, _, fragment = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.exists():
            broken.append(target)
        elif fragment and path.suffix == ".md" and path.parent in (DOCS, ROOT) and fragment not in _anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
