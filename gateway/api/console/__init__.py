"""The web pages the daemon serves: the operators' console (``/console/``, admin login) and the citizens' lookup page
(``/lookup?code=…``, public, rate-limited per client address). :func:`install` adds both to an app."""

from __future__ import annotations

from fastapi import FastAPI

from ...auth import TokenStore
from ...sections import ConsoleSection
from .lookup import LookupLimiter
from .lookup import router as lookup_router
from .pages import router as console_router
from .session import SessionKeeper

__all__ = ["install"]


def install(app: FastAPI, settings: ConsoleSection, tokens: TokenStore) -> None:
    """Serve the console and the lookup page on ``app`` (their sessions signed with ``[console]``'s key and kept in
    the database of ``app.state.runtime``, timed by ``app.state.clock``)."""
    app.state.console_sessions = SessionKeeper(settings, tokens, app.state.runtime.db, app.state.clock)
    app.state.lookup_limiter = LookupLimiter(settings.lookup_per_minute)
    app.include_router(console_router)
    app.include_router(lookup_router)
