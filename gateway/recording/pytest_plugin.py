"""Pytest fixtures replaying cassettes, registered for every test suite once dvc-gateway is installed (entry point
``pytest11``; elsewhere ``-p gateway.recording.pytest_plugin``).

* ``--replay DIR``: the root of the cassette directories (default: ``cassettes/`` beside the test module);
* ``@pytest.mark.cassette("name")``: the cassette of a test (``DIR/name``: a directory of HAR files, or
  ``DIR/name.har``); without the mark, the test function's name;
* the ``cassette`` fixture: a :class:`adapters.http.ClientFactory` whose clients answer from that cassette (its
  ``replayer`` attribute holds the index and statistics). A missing cassette skips the test with the reason. The
  fixture itself is synchronous: an ``async def`` test that uses it needs pytest-asyncio, marked
  ``@pytest.mark.asyncio`` or run with ``asyncio_mode = "auto"``.

respx on top: ``respx.mock(using="httpx")`` patches the client above the transport chain, so a test's respx routes
answer first; add ``respx.route().pass_through()`` last to let the other requests reach the cassette.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the gateway is imported when a test asks for a cassette, not when pytest starts
    from adapters.http import ClientFactory

__all__ = ["cassette", "pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dvc-gateway recording")
    group.addoption("--replay", metavar="DIR", default=None, help="root of the cassette directories to replay")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cassette(name): replay the named cassette through the `cassette` fixture")


def cassette_path(request: pytest.FixtureRequest) -> Path:
    option = request.config.getoption("--replay", default=None)
    root = Path(option) if option else Path(request.path).parent / "cassettes"
    marker = request.node.get_closest_marker("cassette")
    name = str(marker.args[0]) if marker and marker.args else request.node.originalname
    path = root / name
    if not path.exists() and (root / f"{name}.har").is_file():
        path = root / f"{name}.har"
    return path


@pytest.fixture
def cassette(request: pytest.FixtureRequest) -> Iterator[ClientFactory]:
    """A client factory replaying the test's cassette (no network)."""
    from adapters.http import ClientFactory

    from .transport import RecordingSettings, replay_wrapper

    path = cassette_path(request)
    if not path.exists():
        pytest.skip(f"no cassette at {path}")
    wrapper = replay_wrapper(path, RecordingSettings(mode="replay"))
    factory = ClientFactory([wrapper])
    factory.replayer = wrapper.replayer  # type: ignore[attr-defined]
    yield factory
