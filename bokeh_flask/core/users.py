"""Users of the publishing server: their records and what a store keeps of them.

Single-user mode is the default, as in the original Flask Bokeh server: everyone is
:data:`DEFAULT_USER`. In multi-user mode (``--multi-user``) users register or are added by an
admin (``bokeh-flask user add``); a record keeps the password's hash (made by the web
layer with werkzeug) and the hashes of the user's API keys, never the keys themselves. An
API key is long and random, so one SHA-256 of it is enough (:func:`api_key_hash`); a
password is short and needs werkzeug's slow salted hash.
"""
from __future__ import annotations

import hashlib
import re
import typing as t
from dataclasses import dataclass

from .errors import StoreError

#: who everyone is in single-user mode (the original server's name)
DEFAULT_USER = "defaultuser"
#: a user's name
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True)
class UserRecord:
    name: str
    password_hash: str
    api_key_hashes: tuple[str, ...] = ()
    created: float = 0.0


def check_username(name: str) -> str:
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        raise StoreError(f"User names are 1 to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or "
                         f"digit (got {name!r})")
    return name


def api_key_hash(key: str) -> str:
    """What a store keeps of an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class UserStore(t.Protocol):
    """The user half of every backend; each call is atomic."""

    def get_user(self, name: str) -> UserRecord | None: ...

    def add_user(self, record: UserRecord) -> UserRecord:
        """Store a new user; :class:`~bokeh_flask.core.store.StoreConflict` if the name is taken."""

    def save_user(self, record: UserRecord) -> UserRecord:
        """Replace an existing user's record (a new password, API keys)."""

    def remove_user(self, name: str) -> bool: ...

    def list_users(self) -> list[UserRecord]: ...
