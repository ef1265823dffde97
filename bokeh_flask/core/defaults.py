"""``bokeh serve``'s defaults, importable without bokeh (the command line's help uses them before
gevent patches the standard library)."""

DEFAULT_PORT = 5006
DEFAULT_KEEP_ALIVE_MS = 37_000
DEFAULT_CHECK_UNUSED_MS = 17_000
DEFAULT_UNUSED_LIFETIME_MS = 15_000
DEFAULT_STATS_LOG_MS = 15_000
DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024
DEFAULT_TOKEN_EXPIRATION_S = 300
