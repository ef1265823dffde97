"""``Session``: the original Flask Bokeh server's client API on bokeh-flask's publishing server.

.. code-block:: python

    from bokeh.plotting import figure, curdoc
    from bokeh_flask.client import Session

    session = Session("http://localhost:5006/")
    session.login("alice", "secret")          # once; the key is saved in ~/.bokeh
    session.use_doc("sales")
    curdoc().add_root(figure(...))
    session.push()                             # stores the document (PUSH-DOC)
    ...                                        # change it
    session.push()                             # sends only the changes (PATCH-DOC)
    session.publish()                          # anyone may view session.public_url

The HTTP calls use the JSON API under ``<root_url>bokeh/api/``, the document goes over
the websocket ``<root_url>bokeh/doc/<docid>/ws`` with bokeh's own protocol.
"""
from __future__ import annotations

import os
import typing as t
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from bokeh.document import Document
from bokeh.io import curdoc
from bokeh.util.token import generate_jwt_token, generate_session_id
from simple_websocket import Client

from ..core.errors import StoreError
from ..core.store import check_docid
from .keys import load_key, normalize_root_url, remove_key, save_key
from .api import LOGIN_HINT, api_call, unreachable_message
from .connection import DocumentConnection
from .errors import PublishError

__all__ = ["Session", "websocket_url"]


def websocket_url(root_url: str, docid: str) -> str:
    """``<root_url>bokeh/doc/<docid>/ws`` with http -> ws and https -> wss (a path prefix is kept)."""
    parts = urlsplit(urljoin(root_url, f"bokeh/doc/{quote(docid)}/ws"))
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def _connect_websocket(url: str, subprotocols: list[str], headers: dict[str, str]) -> t.Any:
    return Client.connect(url, subprotocols=subprotocols, headers=headers)


class Session:
    """A client of one bokeh-flask server with publishing on.

    ``username``/``api_key`` given here are used as they are; otherwise the key saved
    for ``root_url`` in ``<keys_dir>/bokeh-flask-keys.json`` (``keys_dir`` defaults to
    ``~/.bokeh``) is used, if any. A single-user server needs none.
    """

    #: how ``push``, ``pull`` and the websocket are made; tests put a fake here
    connect_websocket: t.Callable[[str, list[str], dict[str, str]], t.Any] = staticmethod(_connect_websocket)

    def __init__(self, root_url: str = "http://localhost:5006/", *, username: str | None = None,
                 api_key: str | None = None, keys_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 10) -> None:
        self.root_url = normalize_root_url(root_url)
        self.keys_dir = keys_dir
        self.timeout = timeout
        self._username = username
        self._api_key = api_key
        if api_key is None:
            saved = load_key(self.root_url, keys_dir)
            if saved is not None and (username is None or username == saved[0]):
                self._username, self._api_key = saved
        self._docid: str | None = None
        self._document: Document | None = None
        self._connection: DocumentConnection | None = None

    def __repr__(self) -> str:
        return f"Session({self.root_url!r}, username={self._username!r}, docid={self._docid!r})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    # -- identity ------------------------------------------------------------------------------

    @property
    def username(self) -> str | None:
        """The user this session acts as (from login, register, the key file or the arguments)."""
        return self._username

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header's value, when a key is known."""
        if self._username and self._api_key:
            return f"Bearer {self._username}:{self._api_key}"
        return None

    def register(self, username: str, password: str) -> str:
        """Create a user on the server and save its key; returns the user's name."""
        return self._credentials("register", username, password)

    def login(self, username: str, password: str) -> str:
        """Log in and save the key, so later sessions for this server need no login; returns the user's name."""
        return self._credentials("login", username, password)

    def _credentials(self, action: str, username: str, password: str) -> str:
        answer = self._api("POST", f"bokeh/api/{action}", body={"username": username, "password": password},
                           authorize=False)
        name, key = answer.get("username"), answer.get("api_key")
        if not isinstance(name, str) or not isinstance(key, str):
            raise PublishError(None, f"The server's answer to {action} has no username and api_key: is "
                                     f"{self.root_url} a bokeh-flask server with publishing on?")
        self._username, self._api_key = name, key
        save_key(self.root_url, name, key, self.keys_dir)
        self._reconnect_later()
        return name

    def logout(self) -> None:
        """Revoke this session's key on the server and forget it here (and in the key file)."""
        try:
            if self.authorization:
                self._api("POST", "bokeh/api/logout", body={})
        finally:
            saved = load_key(self.root_url, self.keys_dir)
            if saved is not None and saved[0] == self._username:
                remove_key(self.root_url, self.keys_dir)
            self._username = self._api_key = None
            self._reconnect_later()

    def whoami(self) -> dict[str, t.Any]:
        """The server's view: ``{"username": name or None, "multi_user": bool}``."""
        return self._api("GET", "bokeh/api/whoami")

    # -- the current document ------------------------------------------------------------------

    @property
    def docid(self) -> str | None:
        return self._docid

    def use_doc(self, name: str) -> Session:
        """Make ``name`` the document later calls act on (created on the first ``push``); returns the session."""
        try:
            check_docid(name)
        except StoreError as e:
            raise ValueError(str(e)) from None
        if name != self._docid:
            self._close_connection()
            self._docid = name
            self._document = None
        return self

    def _require_docid(self) -> str:
        if self._docid is None:
            raise PublishError(None, "No document chosen: call session.use_doc('name') first")
        return self._docid

    @property
    def doc_url(self) -> str:
        """The owner's page of the current document."""
        return urljoin(self.root_url, f"bokeh/doc/{quote(self._require_docid())}")

    @property
    def public_url(self) -> str:
        """The page anyone may view once the document is published."""
        return f"{self.doc_url}?public=true"

    @property
    def document(self) -> Document | None:
        """The last document pushed or pulled; ``push()`` without an argument pushes it."""
        return self._document

    def push(self, document: Document | None = None) -> None:
        """Store ``document`` (default: the last one pushed or pulled, else ``curdoc()``) as the current docid.

        The first push of a document sends it whole (PUSH-DOC); the connection stays open,
        and later pushes of the same document send only the changes made since (PATCH-DOC).
        Changes the server sends meanwhile (another of the owner's connections edited the
        document) are applied to it as they arrive, on the connection's reader thread.
        """
        if document is None:
            document = self._document if self._document is not None else curdoc()
        connection = self._open()
        if connection.document is document:
            connection.send_changes()
        else:
            connection.push_document(document)
        self._document = document

    def pull(self) -> Document:
        """The stored document as a new bokeh ``Document`` (PULL-DOC-REQ).

        It becomes the session's document: pushing it later sends only its changes, and
        changes from the server are applied to it. Changes of the document attached before
        that were not pushed yet are not sent.
        """
        document = self._open().pull_document()
        self._document = document
        return document

    def close(self) -> None:
        """Close the websocket (the document stays stored). The session can push again later."""
        self._close_connection()

    # -- publishing ----------------------------------------------------------------------------

    def publish(self) -> dict[str, t.Any]:
        """Let anyone view the current document at ``public_url``; returns its info."""
        return self._api("POST", f"bokeh/api/doc/{quote(self._require_docid())}/publish", body={})

    def unpublish(self) -> dict[str, t.Any]:
        """Make the current document private again; returns its info."""
        return self._api("POST", f"bokeh/api/doc/{quote(self._require_docid())}/unpublish", body={})

    def delete(self) -> None:
        """Delete the current document from the server."""
        docid = self._require_docid()
        self._close_connection()
        self._api("DELETE", f"bokeh/api/doc/{quote(docid)}", body={})  # JSON: the server's cross-site check

    def info(self, docid: str | None = None) -> dict[str, t.Any]:
        """``{"docid", "owner", "title", "public", "version", "doc_url", "public_url"}`` of a document."""
        docid = check_docid(docid) if docid is not None else self._require_docid()
        return self._api("GET", f"bokeh/api/doc/{quote(docid)}")

    def list_docs(self, public: bool = False) -> list[dict[str, t.Any]]:
        """My documents, or with ``public=True`` the published ones, as info dicts."""
        answer = self._api("GET", "bokeh/api/docs" + ("?public=true" if public else ""))
        return list(answer.get("docs", []))

    # -- plumbing ------------------------------------------------------------------------------

    def _api(self, method: str, path: str, *, body: t.Any = None, authorize: bool = True) -> t.Any:
        return api_call(self.root_url, method, path, body=body, timeout=self.timeout,
                        authorization=self.authorization if authorize else None)

    def _open(self) -> DocumentConnection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        docid = self._require_docid()
        self._close_connection()
        url = websocket_url(self.root_url, docid)
        token = generate_jwt_token(generate_session_id(secret_key=None, signed=False), secret_key=None, signed=False)
        headers = {"Authorization": self.authorization} if self.authorization else {}
        try:
            websocket = self.connect_websocket(url, ["bokeh", token], headers)
        except OSError as e:
            raise PublishError(None, unreachable_message(self.root_url, e)) from e
        except Exception as e:  # simple_websocket.ConnectionError: the server refused the upgrade
            status = getattr(e, "status_code", None)
            if status in (401, 403):
                raise PublishError(status, f"The server refused the websocket for document {docid!r}: it "
                                           f"belongs to another user, or you are not logged in — {LOGIN_HINT}") from e
            if status == 404:
                raise PublishError(status, f"No document {docid!r} at {self.root_url} (or it is another user's "
                                           f"private document, hidden until you log in: {LOGIN_HINT}; or the "
                                           f"server was started without --publishing)") from e
            raise PublishError(status, f"Could not open the websocket {url} ({e}): is the server started "
                                       f"with --publishing?") from e
        connection = DocumentConnection(websocket, setter=self, timeout=self.timeout, url=url)
        try:
            connection.wait_for_ack()
        except BaseException:
            connection.close()
            raise
        # a new connection has no document attached: the next push sends the document whole,
        # as the server may have missed changes while the old connection was gone
        self._connection = connection
        return connection

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _reconnect_later(self) -> None:
        """A new identity: the open websocket was authorised as someone else."""
        self._close_connection()
