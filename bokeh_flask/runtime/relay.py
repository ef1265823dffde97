"""Hand a websocket to the worker that holds its session (``--num-procs N``).

gunicorn's workers share one listening socket, so a page and its websocket may
reach different workers. When the page request builds the document (an app
with its own ``templates/index.html``, or autoload.js), the token names that
worker (:data:`~bokeh_flask.core.requests.WORKER_KEY`). Every worker also serves the
same Flask app on a private unix socket, ``<relay dir>/<pid>.sock``, in a
directory (mode 0700) that gunicorn's master creates and removes. A websocket
that lands in a worker without its session is passed there: the upgrade
request goes over the unix socket as received, and once the named worker
answers 101 the bytes are copied both ways until either side closes. The
document is then built once per page view and no unused copy lingers. If the
named worker is gone, the websocket's worker builds the session from the token
instead, as without a relay.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import tempfile
import typing as t
from urllib.parse import quote

import gevent
from gevent.pywsgi import WSGIServer

from ..core.errors import ConfigError
from ..core.requests import RELAYED_ENVIRON_KEY, WORKER_KEY
from .wsgi_server import BokehWSGIHandler, plain_gevent_socket, unix_listener

log = logging.getLogger(__name__)

#: header added to a relayed upgrade request (for the target's log only: clients can send it too)
RELAYED_HEADER = "X-Bokeh-Flask-Relayed-From"
#: seconds to connect to another worker and get its answer to the upgrade
HANDSHAKE_TIMEOUT = 10.0
#: seconds a client may take to finish the close after the worker ended a relayed websocket
CLOSE_DRAIN_SECONDS = 2.0
MAX_RESPONSE_HEAD = 64 * 1024
CHUNK_BYTES = 64 * 1024
#: Linux's largest pid (``/proc/sys/kernel/pid_max`` cannot exceed it)
MAX_PID = 2 ** 22


def make_relay_dir() -> str:
    """A fresh private directory (mode 0700) for the workers' sockets."""
    return tempfile.mkdtemp(prefix="bokeh-flask-relay-")


def remove_relay_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def shared_relay_dir(master_pid: int) -> str | None:
    """The directory the workers of one gunicorn master share when gunicorn was started directly.

    ``<tmp>/bokeh-flask-relay-<uid>-<master pid>``, made by the first worker (mode 0700); None,
    with the reason logged, if what is there is not a private directory of this user.
    """
    path = os.path.join(tempfile.gettempdir(), f"bokeh-flask-relay-{os.getuid()}-{int(master_pid)}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # a sibling made it
    except OSError as error:
        log.error("Cannot create %s for relayed websockets (%s); set TMPDIR to a writable directory", path, error)
        return None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) != 0o700:
        log.error("%s is not a private directory of this user; not relaying websockets between workers "
                  "(remove it, or set TMPDIR to a private directory)", path)
        return None
    return path


def remove_if_empty(path: str) -> None:
    """Remove a shared relay directory once its last worker has left (siblings' sockets keep it)."""
    try:
        os.rmdir(path)
    except OSError:
        pass


def worker_pid(value: t.Any) -> int | None:
    """``value`` (from a token payload) as a pid, or None unless it is a plausible one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_PID:
        return value
    return None


class WorkerRelay:
    """One worker's relay: its own unix socket server and the websockets it passes on."""

    def __init__(self, directory: str, app: t.Any) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self._app = app
        self._server: t.Any = None
        self._path = self.socket_path(self.pid)
        #: (client, upstream) socket pairs of the websockets this worker relays
        self._active: set[tuple[t.Any, t.Any]] = set()

    def socket_path(self, pid: int) -> str:
        return os.path.join(self.directory, f"{int(pid)}.sock")

    # -- the target side ------------------------------------------------------

    def start(self) -> bool:
        """Serve the app on this worker's socket; False (and an error logged) if it cannot."""
        try:
            listener = unix_listener(self._path)
        except (OSError, ConfigError) as error:
            log.error("Worker %d cannot listen on %s for relayed websockets (%s); pages with a template "
                      "may build their document twice. Set TMPDIR to a short, writable directory.",
                      self.pid, self._path, error)
            return False
        # no access log: the relaying worker logs each relayed websocket, and the app its opening
        self._server = WSGIServer(listener, self._mark_relayed, handler_class=BokehWSGIHandler, log=None,
                                  error_log=logging.getLogger("bokeh_flask.wsgi"))
        self._server.start()
        log.debug("Worker %d accepts relayed websockets on %s", self.pid, self._path)
        return True

    def _mark_relayed(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        sender = environ.get("HTTP_" + RELAYED_HEADER.upper().replace("-", "_"), "")
        valid = sender.isascii() and sender.isdigit() and len(sender) < 9
        environ[RELAYED_ENVIRON_KEY] = (worker_pid(int(sender)) if valid else None) or 0  # 0: unknown sender
        return self._app(environ, start_response)

    def close_listener(self) -> None:
        """Accept no more relayed websockets (the open ones go on)."""
        if self._server is not None:
            self._server.close()
            self._server = None
            try:
                os.unlink(self._path)
            except OSError:
                pass

    def stop(self) -> None:
        """Close the listener and end every websocket this worker relays."""
        self.close_listener()
        for pair in list(self._active):
            for sock in pair:
                _shutdown(sock, socket.SHUT_RDWR)

    # -- the relaying side ----------------------------------------------------

    def target_of(self, payload: t.Mapping[str, t.Any]) -> int | None:
        """The other live worker a token payload names, if its socket is there."""
        pid = worker_pid(payload.get(WORKER_KEY))
        if pid is None or pid == self.pid:
            return None
        try:
            return pid if stat.S_ISSOCK(os.stat(self.socket_path(pid)).st_mode) else None
        except OSError:
            return None  # that worker has exited (or never listened)

    def relay(self, environ: dict[str, t.Any], pid: int, session_id: str) -> bool:
        """Pass this upgrade request to worker ``pid`` and copy the websocket's bytes.

        True when the worker took it (answered 101): the request has then been
        answered and the caller returns at once. False when it could not be
        handed over and the caller should serve the websocket itself.
        """
        client = environ.get("gunicorn.socket")
        if client is None:
            return False  # only gunicorn's workers relay
        try:
            head = _upgrade_request(environ, self.pid)
        except UnicodeEncodeError:
            return False
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.settimeout(HANDSHAKE_TIMEOUT)
            upstream.connect(self.socket_path(pid))
            upstream.sendall(head)
            answer = _read_response_head(upstream)
        except (OSError, ValueError) as error:
            upstream.close()
            log.warning("Could not relay the websocket of session %s to worker %d (%s); building the "
                        "session here from its token", session_id, pid, error)
            return False
        status = answer.split(b"\r\n", 1)[0]
        if status.split(b" ")[1:2] != [b"101"]:
            upstream.close()
            log.warning("Worker %d answered %r to a relayed websocket of session %s; building the session "
                        "here from its token", pid, status[:100].decode("latin-1"), session_id)
            return False
        upstream.settimeout(None)
        log.info("Relaying the websocket of session %s to worker %d", session_id, pid)
        taken = _take_socket(client)
        if taken is None:
            self._copy_both_ways(client, upstream, answer, pid)  # TLS: the request's greenlet relays
        else:
            gevent.spawn(self._copy_both_ways, taken, upstream, answer, pid)
        return True

    def _copy_both_ways(self, client: t.Any, upstream: t.Any, answer: bytes, pid: int) -> None:
        pair = (client, upstream)
        self._active.add(pair)
        counts = [0, 0]  # bytes from the client, bytes to the client
        try:
            try:
                client.sendall(answer)
            except OSError:
                return
            counts[1] += len(answer)
            inbound = gevent.spawn(_copy, client, upstream, counts, 0)
            _copy(upstream, client, counts, 1)
            # the worker ended the websocket; its close frame went through: let the client answer
            inbound.join(CLOSE_DRAIN_SECONDS)
            inbound.kill(block=False)
        finally:
            self._active.discard(pair)
            for sock in pair:
                sock.close()
            log.debug("Relay to worker %d ended: %d bytes from the client, %d bytes to it", pid, *counts)


def _copy(source: t.Any, target: t.Any, counts: list[int], index: int) -> None:
    """Copy until ``source`` ends (or either side fails), then end ``target``'s writing half."""
    try:
        while True:
            data = source.recv(CHUNK_BYTES)
            if not data:
                break
            target.sendall(data)
            counts[index] += len(data)
    except OSError:
        pass
    finally:
        _shutdown(target, socket.SHUT_WR)


def _shutdown(sock: t.Any, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


def _upgrade_request(environ: dict[str, t.Any], sender: int) -> bytes:
    """The request line and headers as received (rebuilt from the environ), plus the relay header."""
    uri = environ.get("RAW_URI") or (quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
                                     + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else ""))
    lines = [f"{environ.get('REQUEST_METHOD', 'GET')} {uri} {environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}"]
    relayed_key = "HTTP_" + RELAYED_HEADER.upper().replace("-", "_")
    for key, value in environ.items():
        if key.startswith("HTTP_") and key != relayed_key:
            lines.append(f"{'-'.join(p.capitalize() for p in key[5:].split('_'))}: {value}")
    lines.append(f"{RELAYED_HEADER}: {sender}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_response_head(sock: t.Any) -> bytes:
    """Everything read until the end of the response's headers (and any bytes after them)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_RESPONSE_HEAD:
            raise ValueError("response headers too large")
        chunk = sock.recv(CHUNK_BYTES)
        if not chunk:
            raise ValueError("the worker closed the connection without answering")
        data += chunk
    return data


def _take_socket(sock: t.Any) -> t.Any:
    """A socket of our own on gunicorn's client connection, which gunicorn then lets go of.

    As in :meth:`~bokeh_flask.runtime.transport.BokehWebSocket.detach`: the request can
    end and free its memory. None over TLS, where the request keeps the socket.
    """
    if not plain_gevent_socket(sock):
        return None
    return type(sock)(fileno=sock.detach())
