"""Passwords and API keys of publishing users, on top of a store's user records.

Passwords are hashed with werkzeug's salted, slow ``generate_password_hash``; an API key
is 32 random bytes (URL-safe), shown once when it is made and kept only as its SHA-256
(:func:`bokeh_flask.core.users.api_key_hash`), so a leaked store leaks no key.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import replace

from werkzeug.security import check_password_hash, generate_password_hash

from ..core.errors import StoreError
from ..core.users import UserRecord, UserStore, api_key_hash, check_username

#: the shortest password accepted
MIN_PASSWORD_LENGTH = 8


def new_user(name: str, password: str) -> UserRecord:
    """A record for a new user (the store adds it)."""
    check_username(name)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StoreError(f"Passwords have at least {MIN_PASSWORD_LENGTH} characters")
    return UserRecord(name=name, password_hash=generate_password_hash(password))


def site_user_record(name: str) -> UserRecord:
    """A record for a user of a Flask site's own login: API keys only, no password to log in with."""
    check_username(name)
    return UserRecord(name=name, password_hash=NO_PASSWORD)


#: the password hash of a user who has none (no password matches it)
NO_PASSWORD = "!"


def password_matches(record: UserRecord | None, password: str) -> bool:
    if record is not None and record.password_hash == NO_PASSWORD:
        record = None
    if record is None:
        check_password_hash(generate_password_hash("x"), password)  # as long as a real check: names stay secret
        return False
    return check_password_hash(record.password_hash, password)


def issue_api_key(store: UserStore, name: str) -> str:
    """A new API key for ``name`` (returned once; the store keeps its hash)."""
    record = store.get_user(name)
    if record is None:
        raise StoreError(f"No user {name!r}")
    key = secrets.token_urlsafe(32)
    store.save_user(replace(record, api_key_hashes=(*record.api_key_hashes, api_key_hash(key))))
    return key


def revoke_api_key(store: UserStore, name: str, key: str) -> bool:
    record = store.get_user(name)
    if record is None or api_key_hash(key) not in record.api_key_hashes:
        return False
    store.save_user(replace(record, api_key_hashes=tuple(h for h in record.api_key_hashes if h != api_key_hash(key))))
    return True


def api_key_matches(record: UserRecord | None, key: str) -> bool:
    if record is None:
        return False
    wanted = api_key_hash(key)
    return any(hmac.compare_digest(wanted, stored) for stored in record.api_key_hashes)
