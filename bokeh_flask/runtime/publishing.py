"""Publishing's moving parts, chosen by the settings: the store, a Redis child, the change feed.

``--backend memory`` keeps documents in this process; ``shelve`` (the default) in the
SQLite file store of ``--data-directory``, whose writes the other processes find by
polling; ``redis`` in a Redis server, started here as a child process (``redis-server``
on ``--redis-port``) unless ``--redis-url`` or ``--no-start-redis`` is given, whose
pub/sub tells every worker and host of each write.
"""
from __future__ import annotations

import logging
import typing as t
import uuid

from ..core.errors import ConfigError
from ..core.publications import Publications
from ..core.scheduling import Scheduler
from ..core.settings import ServerSettings
from .stores import open_store

log = logging.getLogger(__name__)


def redis_url_for(settings: ServerSettings) -> str:
    """The Redis server to use, started now as a child process when bokeh-flask is to run it."""
    if settings.redis_url:
        return settings.redis_url
    if settings.start_redis:
        from .redis_child import RedisChild  # started only for --backend redis

        child = RedisChild(settings.redis_port, settings.data_directory)
        child.start()
        return child.url
    return f"redis://127.0.0.1:{settings.redis_port}/0"


def open_publications(settings: ServerSettings, scheduler: Scheduler, store: t.Any = None,
                      processes: int = 1) -> Publications:
    """Publications with the store and change feed ``settings`` name."""
    if settings.backend == "memory" and store is None and (processes > 1 or settings.num_procs != 1):
        raise ConfigError("--backend memory keeps documents inside one process; with several processes use "
                          "--backend shelve (a file) or --backend redis")
    redis_url = redis_url_for(settings) if settings.backend == "redis" and store is None else settings.redis_url
    if store is None:
        store = open_store(settings.backend, settings.data_directory, redis_url, settings.max_document_bytes)
        store = in_threads(store) if settings.backend == "shelve" else store
    origin = uuid.uuid4().hex
    feed = None  # one process: nobody else to tell
    if settings.backend != "memory":
        from .feeds import make_feed  # the feeds start threads: imported when publishing is on

        feed = make_feed(settings.backend, store, origin, redis_url)
    if not settings.multi_user and settings.address not in ("127.0.0.1", "::1", "localhost"):
        log.warning("Publishing in single-user mode: anyone who can reach this server may publish as "
                    "'defaultuser'. Use --multi-user, or --address 127.0.0.1")
    log.info("Publishing documents under /bokeh/ (backend %s, %s)", settings.backend,
             "multi-user" if settings.multi_user else "single-user")
    return Publications(store, scheduler, feed, origin)


class ThreadedStore:
    """Runs a blocking store's calls (SQLite waits for locks in C) in gevent's thread pool, so they never
    stall the other greenlets; a plain pass-through without gevent."""

    def __init__(self, store: t.Any, run: t.Callable[..., t.Any]) -> None:
        self.wrapped = store
        self._run = run

    def __getattr__(self, name: str) -> t.Any:
        value = getattr(self.wrapped, name)
        if not callable(value):
            return value
        return lambda *args, **kwargs: self._run(value, args, kwargs)


def in_threads(store: t.Any) -> t.Any:
    """``store`` behind a :class:`ThreadedStore` when gevent has patched the standard library."""
    try:
        from gevent import get_hub, monkey  # present, but the store is wrapped only once it patched
    except ImportError:
        return store
    if not monkey.is_module_patched("socket"):
        return store
    return ThreadedStore(store, lambda fn, args, kwargs: get_hub().threadpool.apply(fn, args, kwargs))


def share_feeds_with_siblings(states: t.Iterable[t.Any], directory: str) -> None:
    """Let the change feeds of these registrations wake each other through the workers' shared directory
    (the file store's polling feed does; others need not)."""
    for state in states:
        feed = state.publications.feed if state.publications is not None else None
        share = getattr(feed, "share_directory", None)
        if share is not None:
            share(directory)
