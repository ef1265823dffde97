"""API keys kept between runs: ``~/.bokeh/bokeh-flask-keys.json``, one entry per server.

The file maps a server's root URL (normalised, see :func:`normalize_root_url`) to
``{"username": ..., "api_key": ...}``, so a later :class:`~bokeh_flask.client.Session`
for the same server is logged in without ``login()``, as the original Bokeh server's
client did with its ``~/.bokeh`` directory. The directory is made private (0700), the
file is written whole to a temporary file (0600) and moved over the old one with
``os.replace``, so a crash never leaves half a file, and the entries of other servers
are kept.
"""
from __future__ import annotations

import json
import os
import tempfile
import typing as t
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import PublishError

__all__ = ["KEYS_FILENAME", "default_keys_dir", "keys_path", "normalize_root_url", "load_keys", "load_key",
           "save_key", "remove_key"]

KEYS_FILENAME = "bokeh-flask-keys.json"


def default_keys_dir() -> Path:
    return Path.home() / ".bokeh"


def keys_path(keys_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(keys_dir if keys_dir is not None else default_keys_dir()).expanduser() / KEYS_FILENAME


def normalize_root_url(root_url: str) -> str:
    """``root_url`` as the key file and the client use it: lower-case scheme and host, path ending in ``/``."""
    parts = urlsplit(root_url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"A server's root URL looks like 'http://localhost:5006/' (got {root_url!r})")
    if parts.query or parts.fragment:
        raise ValueError(f"A server's root URL has no query or fragment (got {root_url!r})")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def load_keys(keys_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, str]]:
    """Every server's entry; ``{}`` when there is no file yet. A damaged file is a :class:`PublishError`."""
    path = keys_path(keys_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise PublishError(None, f"Cannot read the key file {path} ({e}): fix its permissions, or delete it and "
                                 f"log in again") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PublishError(None, f"The key file {path} is not valid JSON ({e}): delete it and log in again") from e
    if not isinstance(data, dict) or not all(_valid_entry(v) for v in data.values()):
        raise PublishError(None, f"The key file {path} does not hold {{root_url: {{'username', 'api_key'}}}}: "
                                 f"delete it and log in again")
    return data


def _valid_entry(entry: t.Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("username"), str)
            and isinstance(entry.get("api_key"), str))


def load_key(root_url: str, keys_dir: str | os.PathLike[str] | None = None) -> tuple[str, str] | None:
    """``(username, api_key)`` saved for the server at ``root_url``, or None."""
    entry = load_keys(keys_dir).get(normalize_root_url(root_url))
    return (entry["username"], entry["api_key"]) if entry else None


def save_key(root_url: str, username: str, api_key: str, keys_dir: str | os.PathLike[str] | None = None) -> Path:
    """Save (or replace) the server's entry, keeping the others; returns the file's path."""
    return _update(keys_dir, normalize_root_url(root_url), {"username": username, "api_key": api_key})


def remove_key(root_url: str, keys_dir: str | os.PathLike[str] | None = None) -> bool:
    """Forget the server's entry; False if there was none."""
    root = normalize_root_url(root_url)
    if root not in load_keys(keys_dir):
        return False
    _update(keys_dir, root, None)
    return True


def _update(keys_dir: str | os.PathLike[str] | None, root: str, entry: dict[str, str] | None) -> Path:
    path = keys_path(keys_dir)
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask, and an existing directory keeps its own
    keys = load_keys(keys_dir)
    if entry is None:
        keys.pop(root, None)
    else:
        keys[root] = entry
    fd, temporary = tempfile.mkstemp(prefix=f".{KEYS_FILENAME}.", suffix=".tmp", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(keys, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path
