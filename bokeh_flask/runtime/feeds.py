"""Change feeds: how a process serving a published document live hears of other processes' writes.

Each feed is a :class:`~bokeh_flask.core.ports.ChangeFeed`. :class:`LocalFeed` (the
memory backend: one process, nobody to tell) does nothing; :class:`PollingFeed` (the
file store) reads the store's versions every ``interval`` and the changes recorded
with them; :class:`RedisFeed` publishes each write on a Redis channel and listens to
it. The loop runs in a ``threading.Thread`` (a greenlet once gevent has patched the
standard library, a thread under ``flask run``); ``deliver`` is called from it and an
exception it raises is logged, never ending the loop. A delivered change may be one
the receiver has already (its version not above the receiver's): receivers compare.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import select
import socket
import threading
import typing as t
from dataclasses import asdict, replace

from ..core.errors import ConfigError
from ..core.ports import ChangeFeed
from ..core.store import ChangeLog, DocumentChange
from .stores import BACKENDS, DEFAULT_REDIS_PORT

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # optional extra: pip install "bokeh-flask[redis]"; RedisFeed says so
    redis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Deliver = t.Callable[[DocumentChange], None]
Watched = t.Callable[[], t.Mapping[str, int]]

#: the Redis channel every bokeh-flask process publishes its writes on
CHANNEL = "bokeh-flask:changes"
#: seconds ``get_message`` waits, which bounds how long ``stop()`` waits for the Redis loop
RECEIVE_TIMEOUT_SECONDS = 0.2
#: seconds to wait before reconnecting to Redis: the first wait, doubled each time up to the last
BACKOFF_SECONDS = (0.1, 2.0)
#: seconds a Redis command (publishing, connecting) may take before Redis counts as unreachable
REDIS_TIMEOUT_SECONDS = 2.0
#: how long ``stop()`` waits for the loop to end
STOP_TIMEOUT_SECONDS = 5.0


def deliver_safely(deliver: Deliver, change: DocumentChange) -> bool:
    """Call ``deliver``; log what it raises. True if it returned."""
    try:
        deliver(change)
        return True
    except Exception:
        log.exception("Delivering version %d of %r failed; the feed goes on", change.version, change.docid)
        return False


class LocalFeed:
    """The feed of one process alone (``--backend memory``): nothing to publish or hear."""

    def publish(self, change: DocumentChange) -> None:
        pass

    def start(self, deliver: Deliver, watched: Watched) -> None:
        pass

    def stop(self) -> None:
        pass


class _LoopFeed:
    """Starts and stops a feed's loop (:meth:`_run`) in a daemon thread."""

    name = "feed"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliver: Deliver = lambda change: None
        self._watched: Watched = dict

    def start(self, deliver: Deliver, watched: Watched) -> None:
        if self._thread is not None:
            raise RuntimeError(f"This {type(self).__name__} was started already: make one feed per registration")
        self._deliver, self._watched = deliver, watched
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"bokeh-flask {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                log.warning("The %s loop did not end within %g s", self.name, STOP_TIMEOUT_SECONDS)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError

    def _watched_now(self) -> dict[str, int]:
        try:
            return dict(self._watched())
        except Exception:
            log.exception("Listing the documents served live failed")
            return {}


#: the name ending of a process's wake-up socket in the shared relay directory
NUDGE_SUFFIX = ".nudge"


class PollingFeed(_LoopFeed):
    """The file store's feed: every ``interval`` seconds, the watched documents' versions, and the
    changes after the version each process has (one change with ``change=None`` where they are not all kept).

    Writes this process published are not delivered back to it.
    """

    name = "polling feed"
    #: how many of this process's own writes are remembered, to skip them when read back
    OWN_WRITES_KEPT = 1000

    def __init__(self, store: ChangeLog, origin: str, interval: float = 0.2) -> None:
        super().__init__()
        self.store, self.origin, self.interval = store, origin, interval
        self._own: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._own_lock = threading.Lock()
        #: docid -> (the version the receiver had, the version delivered up to) at the last delivery
        self._sent: dict[str, tuple[int, int]] = {}
        #: (directory, this process's socket path, its socket) once :meth:`share_directory` was called
        self._nudges: tuple[str, str, socket.socket] | None = None
        self._failing = False

    def publish(self, change: DocumentChange) -> None:
        """Remember the write (the store holds it already), so that polling does not hand it back; wake
        the sibling processes' polls (see :meth:`share_directory`)."""
        with self._own_lock:
            self._own[(change.docid, change.version)] = None
            while len(self._own) > self.OWN_WRITES_KEPT:
                self._own.popitem(last=False)
        self._nudge_siblings()

    def share_directory(self, directory: str) -> None:
        """Poll at once when a sibling process wrote: each process listens on a unix datagram socket
        ``<directory>/<origin>.nudge`` (the workers' private relay directory) and, after a write, sends
        one byte to the others' sockets. Polling on the interval goes on beside it."""
        path = os.path.join(directory, f"{self.origin}{NUDGE_SUFFIX}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            listener.bind(path)
        except OSError as error:
            listener.close()
            log.warning("Cannot listen on %s for sibling writes (%s): they are found by polling every %g s",
                        path, error, self.interval)
            return
        listener.setblocking(False)
        self._nudges = (directory, path, listener)
        log.debug("Polling feed wakes on %s", path)

    def _nudge_siblings(self) -> None:
        if self._nudges is None:
            return
        directory, own, listener = self._nudges
        try:
            names = [n for n in os.listdir(directory) if n.endswith(NUDGE_SUFFIX)]
        except OSError:
            return
        for name in names:
            path = os.path.join(directory, name)
            if path == own:
                continue
            try:
                listener.sendto(b"!", path)
            except OSError:
                pass  # gone, or its queue is full: it polls soon anyway

    def _wait(self) -> bool:
        """Sleep until the interval ends or a sibling wrote; False once stopping."""
        if self._nudges is None:
            return not self._stopping.wait(self.interval)
        listener = self._nudges[2]
        try:
            select.select([listener], [], [], self.interval)
            while listener.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return not self._stopping.wait(self.interval)  # the socket was closed by stop()
        return not self._stopping.is_set()

    def stop(self) -> None:
        super().stop()
        nudges, self._nudges = self._nudges, None
        if nudges is not None:
            nudges[2].close()
            try:
                os.unlink(nudges[1])
            except OSError:
                pass

    def _run(self) -> None:
        while self._wait():
            self.poll_once()

    def poll_once(self) -> None:
        """Read the versions once and deliver what changed (the loop's step; tests call it directly)."""
        watched = self._watched_now()
        self._sent = {docid: sent for docid, sent in self._sent.items() if docid in watched}
        if not watched:
            return
        try:
            stored = self.store.versions(watched)
            if self._failing:
                log.info("The document store answers again: polling for changes goes on")
                self._failing = False
            for docid, known in watched.items():
                self._catch_up(docid, known, stored.get(docid, 0))
        except Exception:
            if not self._failing:
                log.warning("Polling the document store for changes failed; trying again every %g s",
                            self.interval, exc_info=True)
                self._failing = True

    def _catch_up(self, docid: str, known: int, latest: int) -> None:
        last = self._sent.get(docid)
        base = last[1] if last is not None and last[0] == known else known  # already delivered up to
        if latest == base:
            return
        changes = self.store.changes_since(docid, base) if latest > base else None
        if changes is None:
            changes = [DocumentChange(docid, latest, None, "")]
        with self._own_lock:
            theirs = [c for c in changes if (c.docid, c.version) not in self._own]
        for change in theirs:
            deliver_safely(self._deliver, change)
        self._sent[docid] = (known, latest)  # not again, even if deliver failed: it would fail every poll


class RedisFeed(_LoopFeed):
    """The Redis backend's feed: writes are published on :data:`CHANNEL` as JSON of the
    :class:`~bokeh_flask.core.store.DocumentChange`; a subscriber loop delivers other processes' ones.

    When Redis goes away the loop logs it once, reconnects with backoff and, once subscribed
    again, delivers ``DocumentChange(docid, 0, None, "")`` for each watched document (changes
    published meanwhile were lost: the receiver compares versions with the store).
    """

    name = "Redis feed"

    def __init__(self, url: str, origin: str) -> None:
        if redis is None:
            raise ConfigError('--backend redis needs the redis package: pip install "bokeh-flask[redis]"')
        super().__init__()
        self.url, self.origin = url, origin
        options = dict(socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                       socket_keepalive=True, decode_responses=True)
        # one retry: a pooled connection may be stale after Redis restarted; more would hold up the writer
        self._publisher = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        # no hidden retries: a reconnect must be seen here, to resync after it
        self._listener = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), health_check_interval=10, **options)

    def publish(self, change: DocumentChange) -> None:
        """Publish ``change`` as this process's; a failure is logged (the store write stands on its own)."""
        payload = json.dumps(asdict(replace(change, origin=self.origin)))
        try:
            self._publisher.publish(CHANNEL, payload)
        except redis.RedisError as error:
            log.warning("Publishing version %d of %r on Redis at %s failed: %s", change.version, change.docid,
                        self.url, error)

    def stop(self) -> None:
        super().stop()
        self._publisher.close()
        self._listener.close()

    def _run(self) -> None:
        backoff, lost = BACKOFF_SECONDS[0], False
        while not self._stopping.is_set():
            pubsub = self._listener.pubsub()
            try:
                self._subscribe(pubsub)
                if lost:
                    log.info("Redis at %s is back: resyncing the documents served live", self.url)
                    self._resync()
                backoff, lost = BACKOFF_SECONDS[0], False
                self._listen(pubsub)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                if not lost:
                    log.warning("Lost Redis at %s (%s): reconnecting, changes from other processes wait", self.url,
                                error)
                lost = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_SECONDS[1])
            except Exception:
                log.exception("The Redis feed's loop failed: starting it again")
                lost = True
                self._stopping.wait(backoff)
            finally:
                _close_quietly(pubsub)

    def _subscribe(self, pubsub: t.Any) -> None:
        """Subscribe, and wait for Redis to confirm it: from then on no publication is missed."""
        pubsub.subscribe(CHANNEL)
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=RECEIVE_TIMEOUT_SECONDS)
            if message is not None and message.get("type") == "subscribe":
                return

    def _listen(self, pubsub: t.Any) -> None:
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=RECEIVE_TIMEOUT_SECONDS)
            if message is not None and message.get("type") == "message":
                change = _decode(message.get("data"))
                if change is not None and change.origin != self.origin:
                    deliver_safely(self._deliver, change)

    def _resync(self) -> None:
        for docid in self._watched_now():
            deliver_safely(self._deliver, DocumentChange(docid, 0, None, ""))


def _decode(data: t.Any) -> DocumentChange | None:
    """The change a message carries; None (logged) for one that is not a change."""
    try:
        fields = json.loads(data)
        change = DocumentChange(docid=str(fields["docid"]), version=int(fields["version"]),
                                change=None if fields["change"] is None else str(fields["change"]),
                                origin=str(fields["origin"]))
    except (TypeError, ValueError, KeyError) as error:
        log.warning("Ignoring a message on %s that is not a document change (%s): %.200r", CHANNEL, error, data)
        return None
    return change


def _close_quietly(pubsub: t.Any) -> None:
    try:
        pubsub.close()
    except Exception:
        log.debug("Closing a Redis subscription failed", exc_info=True)


def make_feed(backend: str, store: t.Any, origin: str, redis_url: str | None = None) -> ChangeFeed:
    """The feed for ``--backend``: memory a :class:`LocalFeed`, shelve a :class:`PollingFeed` on
    ``store``, redis a :class:`RedisFeed` on ``redis_url`` (the default port when None)."""
    if backend == "memory":
        return LocalFeed()
    if backend == "shelve":
        return PollingFeed(store, origin)
    if backend == "redis":
        return RedisFeed(redis_url or f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0", origin)
    raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
