"""``autoload_server``: embed a published document in another page (the original Bokeh server's call).

.. code-block:: python

    from bokeh_flask.embed import autoload_server
    script = autoload_server(session=session, public=True)   # session.use_doc("sales") was called
    # or, without a session object:
    script = autoload_server(url="https://plots.example.com/", docid="sales", public=True)

The tag loads ``<root>/bokeh/doc/<docid>/autoload.js``, made by bokeh's own
``bokeh.embed.server_document``; ``public=True`` adds ``public=true``, which a page of
another user needs once the document is published.

``model`` is accepted for the old signature and adds nothing: the **whole document** is
shown where the tag stands, as bokeh's ``server_document`` does. To show one plot of a
document, link or frame its page ``<root>/bokeh/doc/<docid>/<plotid>`` instead.
"""
from __future__ import annotations

import typing as t
from urllib.parse import quote, urljoin, urlsplit

from bokeh.embed import server_document

from .core.errors import StoreError
from .core.store import check_docid

__all__ = ["autoload_server"]


def autoload_server(model: t.Any = None, session: t.Any = None, *, url: str | None = None, docid: str | None = None,
                    public: bool = False, relative_urls: bool = False) -> str:
    """The ``<script>`` tag that shows the published document ``docid`` of the server at ``url``.

    ``session`` (a :class:`bokeh_flask.client.Session`) gives both, from its ``root_url`` and
    current document; ``url``/``docid`` given here win over it. ``relative_urls`` is bokeh's:
    the script then loads resources relative to the page (same origin only).
    """
    root = url if url is not None else getattr(session, "root_url", None)
    name = docid if docid is not None else getattr(session, "docid", None)
    if root is None:
        raise ValueError("autoload_server needs the server: pass session=... or url='http://host:5006/'")
    if name is None:
        raise ValueError("autoload_server needs a document: pass docid=..., or call session.use_doc(name) first")
    try:
        check_docid(name)
    except StoreError as e:
        raise ValueError(str(e)) from None
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"autoload_server's url is a server's root URL like 'http://localhost:5006/' (got {root!r})")
    if not root.endswith("/"):
        root += "/"
    doc_url = urljoin(root, f"bokeh/doc/{quote(name)}")
    return server_document(url=doc_url, relative_urls=relative_urls,
                           arguments={"public": "true"} if public else None)
