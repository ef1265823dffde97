"""Document stores that do I/O: the file store (``--backend shelve``) and Redis; :func:`open_store` picks one."""
from __future__ import annotations

import typing as t

from ...core.errors import ConfigError
from ...core.store import DEFAULT_MAX_DOCUMENT_BYTES, MemoryStore
from .files import FileStore

#: the backends ``--backend`` names (``shelve``, the original server's name, is the file store)
BACKENDS = ("memory", "shelve", "redis")
#: where ``--backend shelve`` keeps its file unless ``--data-directory`` says
DEFAULT_DATA_DIRECTORY = "bokeh_data"
#: the original server's Redis port
DEFAULT_REDIS_PORT = 7001


def open_store(backend: str, data_directory: str = DEFAULT_DATA_DIRECTORY, redis_url: str | None = None,
               max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> t.Any:
    """The store ``--backend`` names."""
    if backend == "memory":
        return MemoryStore(max_document_bytes)
    if backend == "shelve":
        return FileStore(data_directory, max_document_bytes)
    if backend == "redis":
        try:
            from .redis_store import RedisStore  # optional extra: pip install "bokeh-flask[redis]"
        except ImportError as error:
            raise ConfigError('--backend redis needs the redis package: pip install "bokeh-flask[redis]"') from error
        return RedisStore(redis_url or f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0", max_document_bytes)
    raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
