"""The file store (``--backend shelve``, the original Flask server's default name): SQLite in ``--data-directory``.

The seed's backend was Python's ``shelve``, which neither survives several writers nor
tells a half-written file from a whole one. This one keeps the same role on SQLite
(standard library): one database file, ``documents.sqlite3``, in write-ahead-log mode,
so several gunicorn workers (or processes on one machine) read and write at once; each
write is one transaction that checks the version it is based on, so a write either
lands whole or not at all, and a conflicting one is refused. Documents survive a
restart. Each write also records the change that made it (table ``changes``, the last
:data:`KEPT_CHANGES` of each document, written in the same transaction), so a process
serving the document live reads what other processes changed (:meth:`FileStore.versions`,
:meth:`FileStore.changes_since`) instead of reloading it whole. SQLite blocks while it
waits for another writer's lock, which is short: every call opens, commits and closes
within the call.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import typing as t
from dataclasses import replace
from pathlib import Path

from ...core.store import (DEFAULT_MAX_DOCUMENT_BYTES, DocumentChange, StoreConflict, StoredDocument, StoreError,
                           appended, check_docid, next_version, set_public_by_writing,
                           snapshotted)
from ...core.users import UserRecord, check_username

FILENAME = "documents.sqlite3"
#: how long a write waits for another process's transaction (seconds)
LOCK_TIMEOUT_SECONDS = 10.0
_COLUMNS = "docid, owner, doc_json, title, public, version, updated, snapshot_version"
#: how many of a document's latest changes are kept for readers catching up
KEPT_CHANGES = 200


class _UsersMixin:
    """The user methods of :class:`FileStore` (the ``users`` table)."""

    _connect: t.Callable[[], sqlite3.Connection]

    def get_user(self, name: str) -> UserRecord | None:
        db = self._connect()
        try:
            row = db.execute("SELECT name, password_hash, api_key_hashes, created FROM users WHERE name = ?",
                             (name,)).fetchone()
            return _user(row) if row else None
        finally:
            db.close()

    def add_user(self, record: UserRecord) -> UserRecord:
        check_username(record.name)
        stored = UserRecord(record.name, record.password_hash, record.api_key_hashes, record.created or time.time())
        db = self._connect()
        try:
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)",
                       (stored.name, stored.password_hash, json.dumps(list(stored.api_key_hashes)), stored.created))
            return stored
        except sqlite3.IntegrityError:
            raise StoreConflict(f"User {record.name!r} exists already") from None
        finally:
            db.close()

    def save_user(self, record: UserRecord) -> UserRecord:
        db = self._connect()
        try:
            changed = db.execute("UPDATE users SET password_hash = ?, api_key_hashes = ? WHERE name = ?",
                                 (record.password_hash, json.dumps(list(record.api_key_hashes)), record.name)).rowcount
            if not changed:
                raise StoreError(f"No user {record.name!r}")
            return record
        finally:
            db.close()

    def remove_user(self, name: str) -> bool:
        db = self._connect()
        try:
            return db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0
        finally:
            db.close()

    def list_users(self) -> list[UserRecord]:
        db = self._connect()
        try:
            return [_user(row) for row in db.execute(
                "SELECT name, password_hash, api_key_hashes, created FROM users ORDER BY name")]
        finally:
            db.close()


class _FailuresMixin:
    """Failed logins (the ``login_failures`` table), shared by every process using the file."""

    _connect: t.Callable[[], sqlite3.Connection]

    def record_failure(self, key: str, at: float, window_seconds: float) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO login_failures VALUES (?, ?)", (key, at))
            db.execute("DELETE FROM login_failures WHERE at <= ?", (at - window_seconds,))  # everyone's old ones
            db.execute("COMMIT")
        finally:
            db.close()

    def recent_failures(self, key: str, since: float) -> list[float]:
        db = self._connect()
        try:
            return [row[0] for row in db.execute(
                "SELECT at FROM login_failures WHERE key = ? AND at > ? ORDER BY at", (key, since))]
        finally:
            db.close()

    def clear_failures(self, key: str) -> None:
        db = self._connect()
        try:
            db.execute("DELETE FROM login_failures WHERE key = ?", (key,))
        finally:
            db.close()


class FileStore(_UsersMixin, _FailuresMixin):
    """A :class:`~bokeh_flask.core.store.DocumentStore` (and user store) in one SQLite file, shared by processes."""

    def __init__(self, directory: str | os.PathLike[str],
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.max_document_bytes = max_document_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as error:
            raise StoreError(f"Cannot use --data-directory {self.directory}: {error.strerror}") from error
        self.path = self.directory / FILENAME
        db = self._connect()  # closed at once: an open connection must not be inherited by a forked worker
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # doc_json is the document at snapshot_version; the changes after it complete it
            db.execute("CREATE TABLE IF NOT EXISTS documents (docid TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                       "doc_json TEXT NOT NULL, title TEXT NOT NULL, public INTEGER NOT NULL, "
                       "version INTEGER NOT NULL, updated REAL NOT NULL, snapshot_version INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, "
                       "api_key_hashes TEXT NOT NULL, created REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (key, at)")
            columns = [row[1] for row in db.execute("PRAGMA table_info(documents)")]
            if "snapshot_version" not in columns:  # a file of an earlier bokeh-flask: every row was a snapshot
                db.execute("ALTER TABLE documents ADD COLUMN snapshot_version INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE documents SET snapshot_version = version")
            # change is NULL for a write whose change was not given: readers reload at that version
            db.execute("CREATE TABLE IF NOT EXISTS changes (docid TEXT NOT NULL, version INTEGER NOT NULL, "
                       "change TEXT, PRIMARY KEY (docid, version))")
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError(f"Cannot open the document store {self.path}: {error}") from error

    def _row(self, db: sqlite3.Connection, docid: str) -> StoredDocument | None:
        """The document with its pending changes (call inside a transaction: both are read at once)."""
        row = db.execute(f"SELECT {_COLUMNS} FROM documents WHERE docid = ?", (docid,)).fetchone()
        if not row:
            return None
        document, snapshot_version = _document(row), row[-1]
        if document.version == snapshot_version:
            return document
        changes = db.execute("SELECT version, change FROM changes WHERE docid = ? AND version > ? ORDER BY version",
                             (docid, snapshot_version)).fetchall()
        if [v for v, _ in changes] != list(range(snapshot_version + 1, document.version + 1)) \
                or any(c is None for _, c in changes):
            raise StoreError(f"The changes of {docid!r} after its snapshot are missing from {self.path}: restore "
                             "the file from a backup, or delete the document")
        return replace(document, pending=tuple(c for _, c in changes))

    def get(self, docid: str) -> StoredDocument | None:
        db = self._connect()
        try:
            db.execute("BEGIN")
            try:
                return self._row(db, docid)
            finally:
                db.execute("COMMIT")
        finally:
            db.close()

    def put(self, document: StoredDocument, based_on: int, change: str | None = None) -> StoredDocument:
        """See :meth:`~bokeh_flask.core.store.DocumentStore.put`; ``change`` is recorded with the new version."""
        check_docid(document.docid)
        with self._transaction(document.docid) as db:
            stored = next_version(self._row(db, document.docid), document, based_on, self.max_document_bytes, change)
            db.execute(f"INSERT OR REPLACE INTO documents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (stored.docid, stored.owner, stored.doc_json, stored.title, int(stored.public),
                        stored.version, stored.updated, stored.version))
            self._record(db, stored, change)
            return stored

    @contextlib.contextmanager
    def _transaction(self, docid: str) -> t.Iterator[sqlite3.Connection]:
        """One write transaction, the write lock taken first (no other writer between a check and the write);
        rolled back if anything raises, and SQLite's own failures reported as :class:`StoreError`."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreError(f"Writing {docid!r} to {self.path} failed: {error}") from error
        finally:
            db.close()

    def _record(self, db: sqlite3.Connection, stored: StoredDocument, change: str | None) -> None:
        """Keep ``change`` with its version, and the last :data:`KEPT_CHANGES` (never one after the snapshot)."""
        db.execute("INSERT OR REPLACE INTO changes (docid, version, change) VALUES (?, ?, ?)",
                   (stored.docid, stored.version, change))
        db.execute("DELETE FROM changes WHERE docid = ? AND version <= ?",
                   (stored.docid, min(stored.version - KEPT_CHANGES, stored.snapshot_version)))

    def append(self, docid: str, owner: str, based_on: int, change: str) -> StoredDocument:
        """See :meth:`~bokeh_flask.core.store.DocumentStore.append`: one row of ``changes`` and a new version."""
        return self._write(docid, lambda current: appended(current, docid, owner, based_on, change,
                                                           self.max_document_bytes), change)

    def snapshot(self, docid: str, version: int, doc_json: str, title: str) -> bool:
        return self._write(docid, lambda current: snapshotted(current, version, doc_json, title), None) is not None

    def _write(self, docid: str, make: t.Callable[[StoredDocument | None], StoredDocument | None],
               change: str | None) -> StoredDocument | None:
        """One transaction: read the document, ``make`` its next state (None: nothing to write), write it."""
        with self._transaction(docid) as db:
            current = self._row(db, docid)
            stored = make(current)
            if stored is not None:
                db.execute("UPDATE documents SET doc_json = ?, title = ?, public = ?, version = ?, updated = ?, "
                           "snapshot_version = ? WHERE docid = ?",
                           (stored.doc_json, stored.title, int(stored.public), stored.version, stored.updated,
                            stored.snapshot_version, docid))
                if current is not None and stored.version != current.version:
                    self._record(db, stored, change)
            return stored

    def set_public(self, docid: str, public: bool) -> StoredDocument:
        """One more version, recorded with its change, so the other processes' polls find it."""
        return set_public_by_writing(self, docid, public)

    def delete(self, docid: str) -> bool:
        with self._transaction(docid) as db:
            removed = db.execute("DELETE FROM documents WHERE docid = ?", (docid,)).rowcount > 0
            db.execute("DELETE FROM changes WHERE docid = ?", (docid,))
            return removed

    def versions(self, docids: t.Iterable[str]) -> dict[str, int]:
        """The stored version of each of ``docids`` (0 for one not stored), in one query."""
        wanted = list(dict.fromkeys(docids))
        if not wanted:
            return {}
        db = self._connect()
        try:
            found = dict(db.execute("SELECT docid, version FROM documents WHERE docid IN "
                                    "(SELECT value FROM json_each(?))", (json.dumps(wanted),)).fetchall())
        finally:
            db.close()
        return {docid: found.get(docid, 0) for docid in wanted}

    def changes_since(self, docid: str, version: int) -> list[DocumentChange] | None:
        """The recorded changes after ``version``, oldest first (origin ""); ``None`` when one of them
        is missing (trimmed, or written without its change) or the document went back below
        ``version`` (deleted): the reader must load the document again."""
        db = self._connect()
        try:
            db.execute("BEGIN")  # one snapshot: the document's version and its changes agree
            row = db.execute("SELECT version FROM documents WHERE docid = ?", (docid,)).fetchone()
            rows = db.execute("SELECT version, change FROM changes WHERE docid = ? AND version > ? ORDER BY version",
                              (docid, version)).fetchall()
            db.execute("COMMIT")
        finally:
            db.close()
        latest = row[0] if row else 0
        if latest < version:
            return None
        if [v for v, _ in rows] != list(range(version + 1, latest + 1)) or any(c is None for _, c in rows):
            return None
        return [DocumentChange(docid, v, c, "") for v, c in rows]

    def list(self, owner: str | None = None, public: bool | None = None) -> list[StoredDocument]:
        query, values = f"SELECT {_COLUMNS} FROM documents WHERE 1 = 1", []
        if owner is not None:
            query, values = query + " AND owner = ?", [*values, owner]
        if public is not None:
            query, values = query + " AND public = ?", [*values, int(public)]
        db = self._connect()
        try:
            return [_document(row) for row in db.execute(query + " ORDER BY docid", values)]
        finally:
            db.close()




def _user(row: t.Sequence[t.Any]) -> UserRecord:
    name, password_hash, keys, created = row
    return UserRecord(name=name, password_hash=password_hash, api_key_hashes=tuple(json.loads(keys)), created=created)


def _document(row: t.Sequence[t.Any]) -> StoredDocument:
    """A row of ``documents`` (its pending changes are added by the caller)."""
    docid, owner, doc_json, title, public, version, updated, _ = row
    return StoredDocument(docid=docid, owner=owner, doc_json=doc_json, title=title, public=bool(public),
                          version=version, updated=updated)
