"""The gateway's HTTP API: ``create_app(runtime)`` builds the ASGI application."""

from .app import create_app

__all__ = ["create_app"]
