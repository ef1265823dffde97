"""Bounded decompression of what clients send: compressed ``bytes`` values and token payloads.

bokeh's deserializer inflates a base64+gzip ``bytes`` value, and
``bokeh.util.token.get_token_payload`` a token's zlib payload, with no limit:
an 87 KB message can ask for gigabytes. Here a compressed value may inflate to
at most :data:`INFLATE_RATIO` times its compressed size (and always to at
least :data:`INFLATE_FLOOR`), and a token payload to :data:`MAX_TOKEN_PAYLOAD`.
"""
from __future__ import annotations

import base64
import binascii
import json
import typing as t
import zlib

from bokeh.core.serialization import Deserializer

from .errors import PermissionDenied

INFLATE_RATIO = 64
INFLATE_FLOOR = 1024 * 1024
MAX_TOKEN_PAYLOAD = 1024 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"
_TOKEN_ZLIB_KEY = "__bk__zlib_"


class InflateLimitExceeded(ValueError):
    """A compressed value would inflate past its limit."""


def inflate(data: bytes, limit: int, wbits: int = zlib.MAX_WBITS) -> bytes:
    """Decompress ``data``, refusing to produce more than ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise InflateLimitExceeded(f"a compressed value inflates past {limit} bytes")
    return out + inflater.flush()


def inflate_limit(compressed_size: int) -> int:
    return max(INFLATE_FLOOR, INFLATE_RATIO * compressed_size)


def _decode_bytes_bounded(rep: dict[str, t.Any], deserializer: t.Any) -> t.Any:
    data = rep.get("data")
    if isinstance(data, str):
        try:
            compressed = base64.b64decode(data, validate=True)
        except binascii.Error as error:
            raise ValueError("a bytes value is not valid base64") from error
        if compressed[:2] != _GZIP_MAGIC:
            return compressed  # bokeh before 3.7 sends inline bytes uncompressed
        return inflate(compressed, inflate_limit(len(compressed)), _GZIP_WBITS)
    return deserializer._decode_bytes(rep)  # buffer references: bokeh's own handling


def install_bounded_bytes_decoder() -> None:
    """Make bokeh's Deserializer inflate compressed ``bytes`` within limits (once per process)."""
    if Deserializer._decoders.get("bytes") is not _decode_bytes_bounded:
        Deserializer._decoders["bytes"] = _decode_bytes_bounded


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise PermissionDenied("Invalid token: not base64") from error


def _bytes_hook(obj: dict[str, t.Any]) -> t.Any:
    if set(obj) == {"bytes"} and isinstance(obj["bytes"], str):
        return _b64url(obj["bytes"])
    return obj


def read_token_payload(token: str) -> dict[str, t.Any]:
    """A token's payload (session id removed), inflated within limits and checked for shape.

    Raises :class:`PermissionDenied` (a 403) for anything but a well-formed token.
    """
    if not isinstance(token, str) or not token:
        raise PermissionDenied("Invalid token: empty")
    try:
        decoded = json.loads(_b64url(token.split(".")[0]))
        if not isinstance(decoded, dict):
            raise ValueError("not an object")
        compressed = decoded.pop(_TOKEN_ZLIB_KEY, None)
        if compressed is not None:
            if not isinstance(compressed, str):
                raise ValueError("bad compressed payload")
            extra = json.loads(inflate(_b64url(compressed), MAX_TOKEN_PAYLOAD), object_hook=_bytes_hook)
            if not isinstance(extra, dict):
                raise ValueError("compressed payload is not an object")
            decoded.update(extra)
    except PermissionDenied:
        raise
    except (ValueError, zlib.error, UnicodeDecodeError, RecursionError) as error:
        raise PermissionDenied(f"Invalid token: {str(error)[:100]}") from None
    if not isinstance(decoded.pop("session_id", None), str):
        raise PermissionDenied("Invalid token: it names no session")
    _check_shape(decoded)
    return decoded


def _check_shape(payload: dict[str, t.Any]) -> None:
    for name in ("headers", "cookies"):
        value = payload.get(name)
        if value is not None and not (isinstance(value, dict) and
                                      all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise PermissionDenied(f"Invalid token: {name} must map names to strings")
    arguments = payload.get("arguments")
    if arguments is not None and not (isinstance(arguments, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(i, (bytes, str)) for i in v)
            for k, v in arguments.items())):
        raise PermissionDenied("Invalid token: arguments must map names to lists of values")
    expiry = payload.get("session_expiry")
    if expiry is not None and (isinstance(expiry, bool) or not isinstance(expiry, (int, float))):
        raise PermissionDenied("Invalid token: session_expiry must be a number")
