"""The one exception the publishing client raises."""
from __future__ import annotations

from ..core.errors import BokehFlaskError

__all__ = ["PublishError"]


class PublishError(BokehFlaskError):
    """A publishing call failed: ``status`` is the HTTP status (None when no HTTP answer came),
    ``message`` the server's ``{"error": ...}`` text or our own, naming the fix."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})" if status is not None else message)
        self.status = status
        self.message = message
