"""Tornado-compatible signed ("secure") cookie values, without Tornado.

Auth modules written for ``bokeh serve`` read users from cookies with
``request_handler.get_secure_cookie(name)``, which verifies values in Tornado's
version-2 format, signed with ``--cookie-secret``::

    2|<len>:<key version>|<len>:<timestamp>|<len>:<name>|<len>:<base64 value>|<hex HMAC-SHA256>

where the HMAC covers everything before it, trailing ``|`` included. This
module makes and checks such values so those modules work unchanged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time

DEFAULT_MAX_AGE_DAYS = 31


def _field(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data


def _signature(secret: bytes, signed: bytes) -> bytes:
    return hmac.new(secret, signed, hashlib.sha256).hexdigest().encode()


def create_signed_value(secret: str | bytes, name: str, value: str | bytes, *, now: float | None = None) -> bytes:
    """A signed cookie value for ``name`` (Tornado's format version 2)."""
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    raw = value.encode() if isinstance(value, str) else value
    stamp = str(int(time.time() if now is None else now)).encode()
    signed = b"|".join([b"2", _field(b"0"), _field(stamp), _field(name.encode()), _field(base64.b64encode(raw)), b""])
    return signed + _signature(secret_bytes, signed)


def _split_fields(value: bytes) -> list[bytes] | None:
    """The four length-prefixed fields after ``2|`` and the trailing signature."""
    rest = value[2:]
    fields: list[bytes] = []
    for _ in range(4):
        length, sep, rest = rest.partition(b":")
        if not sep or not length.isdigit():
            return None
        size = int(length)
        if rest[size:size + 1] != b"|":
            return None
        fields.append(rest[:size])
        rest = rest[size + 1:]
    fields.append(rest)
    return fields


def decode_signed_value(secret: str | bytes, name: str, value: str | bytes | None,
                        max_age_days: float = DEFAULT_MAX_AGE_DAYS, *, now: float | None = None) -> bytes | None:
    """The original value if ``value`` is a valid, unexpired signature for ``name``; else ``None``."""
    if not value or not secret:
        return None
    data = value.encode() if isinstance(value, str) else value
    if not data.startswith(b"2|"):
        return None  # version 1 (SHA-1) values are not accepted
    fields = _split_fields(data)
    if fields is None:
        return None
    _key_version, stamp, name_field, encoded, signature = fields
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    if not hmac.compare_digest(signature, _signature(secret_bytes, data[: len(data) - len(signature)])):
        return None
    if name_field != name.encode() or not stamp.isdigit():
        return None
    if int(stamp) < (time.time() if now is None else now) - max_age_days * 86400:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        return None
