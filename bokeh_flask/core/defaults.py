"""``bokeh serve``'s defaults, importable without bokeh (the command line's help uses them before
gevent patches the standard library)."""

DEFAULT_PORT = 5006
DEFAULT_KEEP_ALIVE_MS = 37_000
DEFAULT_CHECK_UNUSED_MS = 17_000
DEFAULT_UNUSED_LIFETIME_MS = 15_000
DEFAULT_STATS_LOG_MS = 15_000
DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024
DEFAULT_TOKEN_EXPIRATION_S = 300
#: a websocket client with more than this many bytes waiting to be written to it is closed
DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024
#: a websocket client whose socket takes no data for this many seconds is closed
DEFAULT_MAX_WRITE_STALL_S = 10.0
#: most header bytes one request may carry (Tornado's limit); more is answered with 431
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
