"""Published documents: what a store keeps, the interface every backend offers, and the memory backend.

A published document (the original Flask Bokeh server's ``use_doc`` / ``publish``) is
kept as bokeh's own JSON of the whole document (a snapshot), the changes made since
(``pending``: each owner's patch is one; serialising a whole document takes ~13 ms for a
small plot, far too long for every patch), its owner, its title, whether anyone may view
it (``?public=true``) and a version that grows by one with every write. The writer
folds the pending changes into a new snapshot from time to time (:meth:`snapshot`). Writers say which version they read: a write based on an older one is a
:class:`StoreConflict`, never a silent overwrite, so two workers (or hosts) writing at
once cannot lose each other's changes. Backends: :class:`MemoryStore` here (one
process), the file store and the Redis store in :mod:`bokeh_flask.runtime.stores`.
"""
from __future__ import annotations

import json
import re
import threading
import time
import typing as t
from dataclasses import dataclass, replace

from .errors import StoreConflict, StoreError, StoreUnavailable
from .users import UserRecord, check_username

__all__ = ["StoreConflict", "StoreError", "StoreUnavailable", "StoredDocument", "DocumentChange", "DocumentStore",
           "ChangeLog", "MemoryStore"]

#: a document's name: what ``use_doc("name")`` takes and its URL shows
DOCID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: largest document a store takes, in bytes of JSON (a setting may lower or raise it)
DEFAULT_MAX_DOCUMENT_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class StoredDocument:
    """One published document and what the server knows of it."""

    docid: str
    owner: str
    doc_json: str
    title: str = ""
    public: bool = False
    #: 1 for the first write, one more for each write after it
    version: int = 0
    updated: float = 0.0
    #: change texts after ``doc_json`` (oldest first): ``doc_json`` is the document at ``version - len(pending)``
    pending: tuple[str, ...] = ()

    @property
    def snapshot_version(self) -> int:
        """The version ``doc_json`` shows."""
        return self.version - len(self.pending)

    @property
    def size(self) -> int:
        """Bytes of JSON kept for it: the snapshot and the changes since."""
        return len(self.doc_json.encode("utf-8")) + sum(len(c.encode("utf-8")) for c in self.pending)


@dataclass(frozen=True)
class DocumentChange:
    """One write to a published document, as feeds pass it between processes.

    ``change`` is JSON text ``{"content": <PATCH-DOC content>, "buffers": [[id, base64], ...]}``
    that turns version ``version - 1`` into ``version``, or ``None``: "something changed,
    compare versions with the store and reload". ``origin`` names the process that wrote
    it ("" when not known, as for changes read back from a store).
    """

    docid: str
    version: int
    change: str | None
    origin: str


def check_docid(docid: str) -> str:
    if not isinstance(docid, str) or not DOCID.fullmatch(docid):
        raise StoreError(f"Document names are 1 to 128 letters, digits, '_', '.' or '-', starting with a letter "
                         f"or digit (got {docid!r})")
    return docid


class DocumentStore(t.Protocol):
    """What every backend offers for documents (and, in :class:`~bokeh_flask.core.users.UserStore`,
    for users). Each call is atomic: it happens whole or not at all."""

    def get(self, docid: str) -> StoredDocument | None: ...

    def put(self, document: StoredDocument, based_on: int, change: str | None = None) -> StoredDocument:
        """Write ``document``; ``based_on`` is the version it was made from (0 for a new one).

        ``change`` is the :attr:`DocumentChange.change` text that made it from ``based_on``,
        which a backend that keeps a change log records with the new version (others ignore
        it). Returns what was stored (with its new version); :class:`StoreConflict` if
        ``based_on`` is not the latest version or the name belongs to another owner.
        """

    def append(self, docid: str, owner: str, based_on: int, change: str) -> StoredDocument:
        """Record one more change of ``owner``'s document at version ``based_on`` (its snapshot stays).

        Returns the new version's details (``doc_json`` and ``pending`` may be left out: read it to have them).

        :class:`StoreConflict` as for :meth:`put`; :class:`StoreError` when the document would be
        over the size limit, or does not exist.
        """

    def snapshot(self, docid: str, version: int, doc_json: str, title: str) -> bool:
        """Make ``doc_json`` (the whole document at ``version``) the snapshot, dropping the changes it
        folds in; False (nothing written) if the document is no longer at ``version``."""

    def set_public(self, docid: str, public: bool) -> StoredDocument: ...

    def delete(self, docid: str) -> bool: ...

    def list(self, owner: str | None = None, public: bool | None = None) -> list[StoredDocument]:
        """Documents of ``owner`` and/or with that ``public`` flag, by name."""


class ChangeLog(t.Protocol):
    """What a store that records each write's change offers readers in other processes (the file store)."""

    def versions(self, docids: t.Iterable[str]) -> dict[str, int]:
        """The stored version of each of ``docids``, 0 for one that is not stored."""

    def changes_since(self, docid: str, version: int) -> list[DocumentChange] | None:
        """The changes after ``version``, oldest first ([] if there are none); ``None`` when
        one of them is not kept: the reader must load the whole document again."""


def publish_change(public: bool) -> str:
    """The change text of publishing (or unpublishing): a write of its own, so every process hears of it."""
    return json.dumps({"public": bool(public)})


def published_flag(change: str | None) -> bool | None:
    """The flag a :func:`publish_change` sets, or None for any other change."""
    if change is None or not change.startswith('{"public"'):
        return None
    value = json.loads(change).get("public")
    return value if isinstance(value, bool) else None


def set_public_by_writing(store: DocumentStore, docid: str, public: bool, attempts: int = 5) -> StoredDocument:
    """Publish or unpublish as one more version of the document (what every backend's ``set_public`` does)."""
    for attempt in range(attempts):
        current = store.get(docid)
        if current is None:
            raise StoreError(f"No document {docid!r}")
        try:
            return store.append(docid, current.owner, current.version, publish_change(public))
        except StoreConflict:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def appended(current: StoredDocument | None, docid: str, owner: str, based_on: int, change: str,
             max_bytes: int, current_size: int | None = None) -> StoredDocument:
    """The document after :meth:`DocumentStore.append`, after every check a backend must make.

    ``current_size`` is the stored size when ``current`` was read without its JSON (``current.size`` else).
    """
    if current is None:
        raise StoreError(f"No document {docid!r}: push it whole first")
    if current.owner != owner:
        raise StoreConflict(f"Document {docid!r} belongs to another user")
    if based_on != current.version:
        raise StoreConflict(f"Document {docid!r} is at version {current.version}, not {based_on}: pull it, then "
                            "write again")
    size = (current.size if current_size is None else current_size) + len(change.encode("utf-8"))
    if size > max_bytes:
        raise StoreError(f"Document {docid!r} would be {size} bytes, over the {max_bytes} bytes a document may "
                         "have (the server's max document size)")
    flag = published_flag(change)
    return replace(current, version=current.version + 1, pending=(*current.pending, change),
                   public=current.public if flag is None else flag, updated=time.time())


def snapshotted(current: StoredDocument | None, version: int, doc_json: str, title: str) -> StoredDocument | None:
    """The document after :meth:`DocumentStore.snapshot`, or None when it is not at ``version`` any more."""
    if current is None or current.version != version:
        return None
    return replace(current, doc_json=doc_json, title=title, pending=())


def next_version(current: StoredDocument | None, document: StoredDocument, based_on: int,
                 max_bytes: int, change: str | None = None) -> StoredDocument:
    """The document to store for a write, after every check a backend must make (the same for all).

    A write keeps the stored published flag, unless it is a :func:`publish_change`.
    """
    check_docid(document.docid)
    if len(document.doc_json.encode("utf-8")) > max_bytes:
        raise StoreError(f"Document {document.docid!r} is {len(document.doc_json.encode('utf-8'))} bytes, over the "
                         f"{max_bytes} bytes a document may have (the server's max document size)")
    if current is not None and current.owner != document.owner:
        raise StoreConflict(f"Document {document.docid!r} belongs to another user")
    latest = current.version if current is not None else 0
    if based_on != latest:
        raise StoreConflict(f"Document {document.docid!r} is at version {latest}, not {based_on}: pull it, then "
                            "write again")
    public = current.public if current is not None else document.public
    flag = published_flag(change)
    return replace(document, version=latest + 1, public=public if flag is None else flag, updated=time.time(),
                   pending=())


class MemoryStore:
    """A :class:`DocumentStore` in this process's memory (``--backend memory``): gone at exit."""

    def __init__(self, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.max_document_bytes = max_document_bytes
        self._documents: dict[str, StoredDocument] = {}
        self._users: dict[str, UserRecord] = {}
        self._lock = threading.Lock()

    def get(self, docid: str) -> StoredDocument | None:
        return self._documents.get(docid)

    def put(self, document: StoredDocument, based_on: int, change: str | None = None) -> StoredDocument:
        """See :meth:`DocumentStore.put`; ``change`` is not kept (one process has no one to tell)."""
        with self._lock:
            stored = next_version(self._documents.get(document.docid), document, based_on, self.max_document_bytes,
                                  change)
            self._documents[stored.docid] = stored
            return stored

    def append(self, docid: str, owner: str, based_on: int, change: str) -> StoredDocument:
        with self._lock:
            stored = appended(self._documents.get(docid), docid, owner, based_on, change, self.max_document_bytes)
            self._documents[docid] = stored
            return stored

    def snapshot(self, docid: str, version: int, doc_json: str, title: str) -> bool:
        with self._lock:
            stored = snapshotted(self._documents.get(docid), version, doc_json, title)
            if stored is not None:
                self._documents[docid] = stored
            return stored is not None

    def set_public(self, docid: str, public: bool) -> StoredDocument:
        return set_public_by_writing(self, docid, public)

    def delete(self, docid: str) -> bool:
        with self._lock:
            return self._documents.pop(docid, None) is not None

    def list(self, owner: str | None = None, public: bool | None = None) -> list[StoredDocument]:
        return sorted((d for d in list(self._documents.values())
                       if (owner is None or d.owner == owner) and (public is None or d.public == public)),
                      key=lambda d: d.docid)

    def versions(self, docids: t.Iterable[str]) -> dict[str, int]:
        documents = self._documents
        return {docid: documents[docid].version if docid in documents else 0 for docid in docids}

    def changes_since(self, docid: str, version: int) -> list[DocumentChange] | None:
        """[] when ``version`` is the latest; else ``None`` (no changes are kept: reload)."""
        current = self._documents.get(docid)
        return [] if (current.version if current is not None else 0) == version else None

    # -- users -------------------------------------------------------------

    def get_user(self, name: str) -> UserRecord | None:
        return self._users.get(name)

    def add_user(self, record: UserRecord) -> UserRecord:
        check_username(record.name)
        with self._lock:
            if record.name in self._users:
                raise StoreConflict(f"User {record.name!r} exists already")
            stored = self._users[record.name] = replace(record, created=record.created or time.time())
            return stored

    def save_user(self, record: UserRecord) -> UserRecord:
        with self._lock:
            if record.name not in self._users:
                raise StoreError(f"No user {record.name!r}")
            self._users[record.name] = record
            return record

    def remove_user(self, name: str) -> bool:
        with self._lock:
            return self._users.pop(name, None) is not None

    def list_users(self) -> list[UserRecord]:
        return sorted(list(self._users.values()), key=lambda u: u.name)
