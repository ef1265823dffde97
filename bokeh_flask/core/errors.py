"""Exceptions bokeh-flask raises; each message says how to fix the problem."""
from __future__ import annotations


class BokehFlaskError(Exception):
    """Base class of every bokeh-flask error."""


class ConfigError(BokehFlaskError, ValueError):
    """A setting or a combination of settings cannot work."""


class ApplicationLoadError(BokehFlaskError):
    """A file, directory or object given as an application cannot be served."""


class PermissionDenied(BokehFlaskError):
    """A request is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SessionError(BokehFlaskError):
    """A session could not be created or found."""


class StoreError(BokehFlaskError):
    """A store could not do what was asked."""


class StoreConflict(StoreError):
    """A write was based on a version that is no longer the latest: pull, then write again."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (Redis down, say); nothing was written."""
