"""The Flask layer: the extension and blueprint, the page, static, websocket and ops views,
the auth guard, XSRF, proxies and resources. Imports the core, never the runtime."""
