"""The JSON API of a publishing server over ``urllib.request`` (no third-party HTTP library)."""
from __future__ import annotations

import json
import socket
import typing as t
import urllib.error
import urllib.request
from urllib.parse import urljoin

from .errors import PublishError

__all__ = ["LOGIN_HINT", "api_call", "error_message"]

LOGIN_HINT = ("log in with Session(root_url).login(username, password) (or register(username, password)); "
              "the key is then saved and later sessions use it")


def api_call(root_url: str, method: str, path: str, *, body: t.Any = None, authorization: str | None = None,
             timeout: float = 10) -> t.Any:
    """``method`` on ``<root_url><path>`` with an optional JSON body; the decoded JSON answer.

    Every failure is a :class:`PublishError`: the server's ``{"error": ...}`` text with
    its status, or a sentence saying the server could not be reached.
    """
    url = urljoin(root_url, path.lstrip("/"))
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        with e:
            raise PublishError(e.code, error_message(e.code, e.read(), e.headers, method, url)) from None
    except urllib.error.URLError as e:
        raise PublishError(None, unreachable_message(root_url, e.reason)) from e
    except (socket.timeout, TimeoutError) as e:
        raise PublishError(None, f"The server at {root_url} did not answer {method} {url} within {timeout} s: "
                                 f"is it overloaded, or is root_url right?") from e
    except OSError as e:
        raise PublishError(None, unreachable_message(root_url, e)) from e
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise PublishError(None, f"{method} {url} did not answer JSON: is {root_url} a bokeh-flask server "
                                 f"started with --publishing?") from None


def unreachable_message(root_url: str, reason: t.Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(reason, (socket.timeout, TimeoutError)):
        why = "timed out"
    else:
        why = str(reason)
    return (f"The bokeh-flask server is not reachable at {root_url} ({why}): start it "
            f"(`bokeh-flask serve --publishing`) or pass the right root_url")


def error_message(status: int, raw: bytes, headers: t.Any, method: str, url: str) -> str:
    """The server's ``{"error": ...}`` text, with how to log in for 401/403 and when to retry for 429."""
    message = None
    try:
        answer = json.loads(raw)
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            message = answer["error"]
    except ValueError:
        pass
    if message is None:
        text = raw.decode("utf-8", "replace").strip()
        if status == 404 and "/bokeh/api/" in url and "<" in text:
            message = f"{method} {url} was not found: is the server started with --publishing?"
        else:
            message = f"{method} {url} failed: {text[:200] or 'no explanation given'}"
    if status in (401, 403):
        message = f"{message} — {LOGIN_HINT}"
    elif status == 429:
        retry = headers.get("Retry-After") if headers is not None else None
        if retry:
            message = f"{message} (retry after {retry} s)"
    return message
