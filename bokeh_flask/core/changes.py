"""Changes of published documents as text a store keeps, and whole documents from a snapshot and its changes.

A change is an owner's PATCH-DOC as JSON text, ``{"content": <PATCH-DOC content>, "buffers":
[[id, base64], ...]}``, or a publishing flag (:func:`~.store.publish_change`), which changes
no content. A store keeps a snapshot (the whole document's JSON) and the changes after it.
"""
from __future__ import annotations

import base64
import json
import typing as t

from bokeh.core.json_encoder import serialize_json
from bokeh.core.serialization import Buffer, Serialized
from bokeh.document import Document

from .store import StoredDocument, published_flag


def encode_change(message: t.Any) -> str:
    """A PATCH-DOC message as change text: its content and its buffers in base64."""
    buffers = [[str(buffer.id), base64.b64encode(buffer.to_bytes()).decode("ascii")] for buffer in message.buffers]
    return f'{{"content":{message.content_json},"buffers":{json.dumps(buffers, separators=(",", ":"))}}}'


def decode_change(text: str) -> Serialized[t.Any]:
    """What :func:`encode_change` made, ready for ``Document.apply_json_patch``."""
    data = json.loads(text)
    buffers = [Buffer(buffer_id, base64.b64decode(data_b64)) for buffer_id, data_b64 in data["buffers"]]
    return Serialized(data["content"], buffers)


def document_json(document: Document) -> str:
    """A whole document as JSON text, arrays inline (what a store keeps)."""
    return t.cast(str, serialize_json(document.to_json(deferred=False)))


def load_document(doc_json: str) -> Document:
    return Document.from_json(json.loads(doc_json))


def apply_changes(document: Document, changes: t.Iterable[str]) -> None:
    """Apply stored change texts (publishing flags change no content) to ``document``."""
    for change in changes:
        if published_flag(change) is None:
            document.apply_json_patch(decode_change(change), setter=None)


def materialize(stored: StoredDocument) -> Document:
    """The whole document a store holds: its snapshot with the pending changes applied."""
    document = load_document(stored.doc_json) if stored.doc_json else Document()
    apply_changes(document, stored.pending)
    return document
