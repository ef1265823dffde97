"""Per-application state: its sessions, their creation, lifecycle hooks and cleanup.

:class:`ApplicationContext` plays the role of bokeh's class of the same name
without Tornado: sessions are created once per id even when a page request and
a websocket ask at the same moment, ``on_session_created`` /
``on_session_destroyed`` hooks run (``async def`` hooks are awaited, which
bokeh 3.9 forgets to do), and unused sessions are discarded one scheduled call
at a time so that reaping many never stalls other requests.
"""
from __future__ import annotations

import inspect
import logging
import typing as t
import weakref

from bokeh.application import Application
from bokeh.application.application import ServerContext, SessionContext
from bokeh.application.handlers.handler import Handler
from bokeh.document import Document

from .errors import SessionError
from .limits import read_token_payload
from .metrics import AppStats
from .requests import WORKER_KEY, RequestInfo
from .scheduling import Scheduler
from .sessions import ServerSession

log = logging.getLogger(__name__)


class BokehServerContext(ServerContext):
    """What ``on_server_loaded(server_context)`` and friends receive."""

    def __init__(self, application_context: ApplicationContext) -> None:
        self._application_context = weakref.ref(application_context)

    @property
    def application_context(self) -> ApplicationContext:
        context = self._application_context()
        if context is None:
            raise RuntimeError("the application context is gone")
        return context

    @property
    def sessions(self) -> list[ServerSession]:
        return self.application_context.sessions


class BokehSessionContext(SessionContext):
    """What ``curdoc().session_context`` returns inside an app."""

    def __init__(self, session_id: str, server_context: BokehServerContext, document: Document,
                 request: RequestInfo | None, token: str | None, logout_url: str | None = None) -> None:
        super().__init__(server_context, session_id)
        self._document = document
        self._session: ServerSession | None = None
        self._request = request
        self._token = token
        self._logout_url = logout_url

    @property
    def destroyed(self) -> bool:
        return self._session.destroyed if self._session is not None else False

    @property
    def document(self) -> Document:
        return self._document

    @property
    def request(self) -> RequestInfo | None:
        return self._request

    @property
    def token_payload(self) -> dict[str, t.Any]:
        payload = read_token_payload(self._token) if self._token else {}
        payload.pop(WORKER_KEY, None)  # the server's own routing, not the app's
        return payload

    @property
    def logout_url(self) -> str | None:
        return self._logout_url

    @property
    def session(self) -> ServerSession | None:
        return self._session

    async def with_locked_document(self, func: t.Callable[[Document], t.Any]) -> None:
        if self._session is None:
            result = func(self._document)
        else:
            result = self._session.with_document_locked(func, self._document)
        if inspect.isawaitable(result):
            await result


class ApplicationContext:
    """One served application: its sessions and hooks."""

    def __init__(self, application: Application, url: str, scheduler: Scheduler,
                 logout_url: str | None = None) -> None:
        self.application = application
        self.url = url
        self._scheduler = scheduler
        self._logout_url = logout_url
        self._sessions: dict[str, ServerSession] = {}
        self._session_contexts: dict[str, BokehSessionContext] = {}
        self._pending: dict[str, t.Any] = {}
        #: guards the check-then-register of a session being built (OS threads under ``flask run``)
        self._creation_lock = scheduler.lock()
        self.server_context = BokehServerContext(self)
        self.documents_built = 0
        self.stats = AppStats()

    @property
    def sessions(self) -> list[ServerSession]:
        return list(self._sessions.values())

    def get_session(self, session_id: str) -> ServerSession:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionError(f"no session {session_id!r} in application {self.url!r}") from None

    def has_session(self, session_id: str) -> bool:
        return session_id in self._sessions

    def has_connected_session(self, session_id: str) -> bool:
        """A live session that a websocket has already opened (one an expired token may reconnect to)."""
        session = self._sessions.get(session_id)
        return session is not None and session.ever_connected

    # -- server hooks -------------------------------------------------------

    def run_load_hook(self) -> None:
        try:
            self.application.on_server_loaded(self.server_context)
        except Exception:
            log.exception("Error in on_server_loaded of application %r", self.url)

    def run_unload_hook(self) -> None:
        try:
            self.application.on_server_unloaded(self.server_context)
        except Exception:
            log.exception("Error in on_server_unloaded of application %r", self.url)

    # -- session creation ---------------------------------------------------

    def create_session_if_needed(self, session_id: str, request: RequestInfo | None = None,
                                 token: str | None = None) -> ServerSession:
        """The session with this id, built now unless it exists or is being built."""
        if not session_id:
            raise SessionError("Session ID must not be empty")
        with self._creation_lock:
            session = self._sessions.get(session_id)
            if session is not None:
                return session
            pending = self._pending.get(session_id)
            if pending is None:
                self._pending[session_id] = self._scheduler.event()
        if pending is not None:  # another request is building it: wait for that one
            pending.wait()
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionError(f"creating session {session_id!r} failed; see the server log")
            return session
        try:
            return self._create(session_id, request, token)
        finally:
            with self._creation_lock:
                self._pending.pop(session_id).set()

    def _create(self, session_id: str, request: RequestInfo | None, token: str | None) -> ServerSession:
        document = Document()
        if request is not None and token:
            request = request.with_payload(read_token_payload(token))
        context = BokehSessionContext(session_id, self.server_context, document, request, token,
                                      logout_url=self._logout_url)
        document._session_context = weakref.ref(context)
        self._run_session_hooks("on_session_created", context)
        try:
            self.application.initialize_document(document)
        except Exception as error:
            log.exception("Application %r failed to build its document: %s", self.url, error)
            raise SessionError(f"application {self.url!r} failed to build its document") from error
        self.documents_built += 1
        session = ServerSession(session_id, document, self._scheduler, token=token, stats=self.stats)
        self.stats.sessions_created += 1
        context._session = session
        self._sessions[session_id] = session
        self._session_contexts[session_id] = context
        log.debug("Session %s created for %r", session_id, self.url)
        return session

    def _run_session_hooks(self, name: str, context: BokehSessionContext) -> None:
        for handler in self.application.handlers:
            hook = user_hook(handler, name)
            if hook is None:
                continue
            try:
                result = hook(context)
                if inspect.isawaitable(result):
                    self._scheduler.finish(_await_fully(result))
            except Exception:
                log.exception("Error in %s of application %r", name, self.url)

    # -- session removal -----------------------------------------------------

    def discard_session(self, session: ServerSession, lifetime_ms: float | None = None) -> bool:
        """Destroy an unused session and run its destroy hooks; False if it came back to life."""
        if session.id not in self._sessions:
            return False
        if session.connection_count > 0 or (lifetime_ms is not None and not session.is_unused(lifetime_ms)):
            log.debug("Session %s was to be discarded but came back to life", session.id)
            return False
        context = self._session_contexts.pop(session.id)
        del self._sessions[session.id]
        self._run_session_hooks("on_session_destroyed", context)
        _run_document_destroyed_callbacks(context)
        session.destroy()
        self.stats.sessions_destroyed += 1
        log.debug("Session %s discarded from %r", session.id, self.url)
        return True

    def cleanup_unused(self, lifetime_ms: float) -> int:
        """Schedule the discarding of every unused session; returns how many."""
        unused = [s for s in self._sessions.values() if s.is_unused(lifetime_ms)]
        for session in unused:
            self._scheduler.call_later(0, _bind(self.discard_session, session, lifetime_ms))
        return len(unused)

    def discard_all(self) -> None:
        """Discard every session now (server shutdown)."""
        for session in list(self._sessions.values()):
            session.request_expiration()
            self._discard_forcibly(session)

    def _discard_forcibly(self, session: ServerSession) -> None:
        context = self._session_contexts.pop(session.id, None)
        self._sessions.pop(session.id, None)
        if context is not None:
            self._run_session_hooks("on_session_destroyed", context)
            _run_document_destroyed_callbacks(context)
        session.destroy()
        self.stats.sessions_destroyed += 1


def user_hook(handler: Handler, name: str) -> t.Callable[[t.Any], t.Any] | None:
    """The function to call for a session hook of ``handler``, or ``None`` if it has none.

    For bokeh's lifecycle handlers (``server_lifecycle.py``, ``app_hooks.py``, and
    a directory's hooks) this is the user's own function, so an ``async def``
    hook is awaited and a plain one runs in the calling greenlet: bokeh 3.9
    returns the coroutine unawaited, and 3.10 calls it on a thread and drops it.
    """
    inner = getattr(handler, "_lifecycle_handler", None)
    if isinstance(inner, Handler):
        return user_hook(inner, name)
    function = getattr(handler, f"_{name}", None)
    if callable(function):
        return None if getattr(function, "__name__", "") == "_do_nothing" else function
    if getattr(type(handler), name) is getattr(Handler, name):
        return None
    return t.cast(t.Callable[[t.Any], t.Any], getattr(handler, name))


async def _await_fully(value: t.Any) -> t.Any:
    while inspect.isawaitable(value):
        value = await value
    return value


def _bind(fn: t.Callable[..., t.Any], *args: t.Any) -> t.Callable[[], t.Any]:
    return lambda: fn(*args)


def _run_document_destroyed_callbacks(context: BokehSessionContext) -> None:
    """``Document.on_session_destroyed`` callbacks (bokeh's DocumentLifecycleHandler, minus its gc)."""
    document = context._document
    callbacks = document.session_destroyed_callbacks
    document.session_destroyed_callbacks = set()
    for callback in callbacks:
        try:
            callback(context)
        except Exception:
            log.exception("on_session_destroyed callback %r failed", callback)
