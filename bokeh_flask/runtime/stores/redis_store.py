"""The Redis store (``--backend redis``): one Redis server shared by every worker and host.

Each document is a hash ``bokeh-flask:doc:<name>`` (owner, JSON, title, public, version,
updated) and ``bokeh-flask:docs`` lists the names. A write watches the document's key,
checks the version it is based on, and commits in one ``MULTI``/``EXEC``: a write that
another worker or host made in between makes ``EXEC`` fail, which is reported as the
conflict it is, and nothing is half-written. When Redis cannot be reached every call
raises :class:`~bokeh_flask.core.store.StoreUnavailable` (pages answer 503 with it); what
is stored stays in Redis, and calls work again once it is back.
"""
from __future__ import annotations

import json
import time
import uuid
import typing as t
from dataclasses import replace

import redis

from ...core.store import (DEFAULT_MAX_DOCUMENT_BYTES, StoreConflict, StoredDocument, StoreError, StoreUnavailable,
                           appended, check_docid, next_version, set_public_by_writing)
from ...core.users import UserRecord, check_username

NAMESPACE = "bokeh-flask"
_INDEX = f"{NAMESPACE}:docs"
_USERS = f"{NAMESPACE}:users"
#: seconds to wait for Redis before a call reports it unavailable
TIMEOUT_SECONDS = 2.0


def _key(docid: str) -> str:
    return f"{NAMESPACE}:doc:{docid}"


def _execute_or_conflict(pipe: t.Any, docid: str) -> None:
    """EXEC a watched transaction; another writer in between makes it the conflict it is."""
    try:
        pipe.execute()
    except redis.WatchError:
        raise StoreConflict(f"Document {docid!r} was written by someone else meanwhile: pull it, then write "
                            "again") from None


def _pending_key(docid: str) -> str:
    """The list of a document's changes after its snapshot."""
    return f"{NAMESPACE}:pending:{docid}"


class RedisStore:
    """A :class:`~bokeh_flask.core.store.DocumentStore` in Redis."""

    def __init__(self, url: str, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.url = url
        self.max_document_bytes = max_document_bytes
        self._redis = redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS,
                                           socket_connect_timeout=TIMEOUT_SECONDS, decode_responses=True)

    def _call(self, fn: t.Callable[[], t.Any]) -> t.Any:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise StoreUnavailable(f"The document store (Redis at {self.url}) cannot be reached: {error}") from error

    def get(self, docid: str) -> StoredDocument | None:
        def read() -> StoredDocument | None:
            with self._redis.pipeline(transaction=True) as pipe:  # the snapshot and its changes at once
                pipe.hgetall(_key(docid))
                pipe.lrange(_pending_key(docid), 0, -1)
                row, pending = pipe.execute()
            document = _document(docid, row)
            return replace(document, pending=tuple(pending)) if document is not None and pending else document

        return self._call(read)

    def put(self, document: StoredDocument, based_on: int, change: str | None = None) -> StoredDocument:
        """See :meth:`~bokeh_flask.core.store.DocumentStore.put`; ``change`` is not kept (the Redis feed
        publishes it)."""
        check_docid(document.docid)
        key = _key(document.docid)

        def write() -> StoredDocument:
            with self._redis.pipeline() as pipe:
                pipe.watch(key)
                stored = next_version(_document(document.docid, pipe.hgetall(key)), document, based_on,
                                      self.max_document_bytes, change)
                pipe.multi()
                pipe.hset(key, mapping=_fields(stored))
                pipe.delete(_pending_key(document.docid))
                pipe.sadd(_INDEX, stored.docid)
                _execute_or_conflict(pipe, document.docid)
                return stored

        return t.cast(StoredDocument, self._call(write))

    def append(self, docid: str, owner: str, based_on: int, change: str) -> StoredDocument:
        """See :meth:`~bokeh_flask.core.store.DocumentStore.append`: the snapshot is neither read nor written."""
        key = _key(docid)

        def write() -> StoredDocument:
            with self._redis.pipeline() as pipe:
                pipe.watch(key)
                fields = pipe.hmget(key, "owner", "title", "public", "version", "size")
                current = None
                if fields[0] is not None:
                    current = StoredDocument(docid, fields[0], "", title=fields[1] or "", public=fields[2] == "1",
                                             version=int(fields[3]))
                size = int(fields[4] or 0)
                stored = appended(current, docid, owner, based_on, change, self.max_document_bytes, size)
                pipe.multi()
                pipe.hset(key, mapping={"public": int(stored.public), "version": stored.version,
                                        "updated": stored.updated, "size": size + len(change.encode("utf-8"))})
                pipe.rpush(_pending_key(docid), change)
                _execute_or_conflict(pipe, docid)
                return stored

        return t.cast(StoredDocument, self._call(write))

    def snapshot(self, docid: str, version: int, doc_json: str, title: str) -> bool:
        key = _key(docid)

        def write() -> bool:
            with self._redis.pipeline() as pipe:
                pipe.watch(key)
                if pipe.hget(key, "version") != str(version):
                    return False
                pipe.multi()
                pipe.hset(key, mapping={"doc_json": doc_json, "title": title, "snapshot_version": version,
                                        "size": len(doc_json.encode("utf-8"))})
                pipe.delete(_pending_key(docid))
                try:
                    pipe.execute()
                except redis.WatchError:
                    return False
                return True

        return t.cast(bool, self._call(write))

    def set_public(self, docid: str, public: bool) -> StoredDocument:
        return set_public_by_writing(self, docid, public)

    def delete(self, docid: str) -> bool:
        def remove() -> bool:
            with self._redis.pipeline() as pipe:  # MULTI: the document, its changes and its index entry together
                pipe.delete(_key(docid))
                pipe.delete(_pending_key(docid))
                pipe.srem(_INDEX, docid)
                removed, _, _ = pipe.execute()
            return bool(removed)

        return t.cast(bool, self._call(remove))

    def _remove(self, key: str, index: str, member: str) -> bool:
        """Delete ``key`` and take ``member`` out of ``index``, together; True if the key was there."""
        def remove() -> bool:
            with self._redis.pipeline() as pipe:
                pipe.delete(key)
                pipe.srem(index, member)
                removed, _ = pipe.execute()
            return bool(removed)

        return t.cast(bool, self._call(remove))

    def list(self, owner: str | None = None, public: bool | None = None) -> list[StoredDocument]:
        def everything() -> list[StoredDocument]:
            names = sorted(self._redis.smembers(_INDEX))
            with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(_key(name))
                rows = pipe.execute()
            found = [_document(name, row) for name, row in zip(names, rows)]
            return [d for d in found if d is not None and (owner is None or d.owner == owner)
                    and (public is None or d.public == public)]

        return t.cast("list[StoredDocument]", self._call(everything))


    # -- users: a hash per user, ``bokeh-flask:user:<name>`` -----------------

    def get_user(self, name: str) -> UserRecord | None:
        return t.cast("UserRecord | None", self._call(lambda: _user(name, self._redis.hgetall(_user_key(name)))))

    def add_user(self, record: UserRecord) -> UserRecord:
        check_username(record.name)
        stored = UserRecord(record.name, record.password_hash, record.api_key_hashes, record.created or time.time())

        def add() -> UserRecord:
            key = _user_key(stored.name)
            with self._redis.pipeline() as pipe:
                pipe.watch(key)
                if pipe.exists(key):
                    raise StoreConflict(f"User {stored.name!r} exists already")
                pipe.multi()
                pipe.hset(key, mapping=_user_fields(stored))
                pipe.sadd(_USERS, stored.name)
                try:
                    pipe.execute()
                except redis.WatchError:
                    raise StoreConflict(f"User {stored.name!r} exists already") from None
            return stored

        return t.cast(UserRecord, self._call(add))

    def save_user(self, record: UserRecord) -> UserRecord:
        key = _user_key(record.name)

        def save() -> UserRecord:
            with self._redis.pipeline() as pipe:
                pipe.watch(key)
                if not pipe.exists(key):
                    raise StoreError(f"No user {record.name!r}")
                pipe.multi()
                pipe.hset(key, mapping={"password_hash": record.password_hash,
                                        "api_key_hashes": json.dumps(list(record.api_key_hashes))})
                pipe.execute()
            return record

        return t.cast(UserRecord, self._call(save))

    def remove_user(self, name: str) -> bool:
        return self._remove(_user_key(name), _USERS, name)

    def list_users(self) -> list[UserRecord]:
        def everyone() -> list[UserRecord]:
            names = sorted(self._redis.smembers(_USERS))
            found = [_user(name, self._redis.hgetall(_user_key(name))) for name in names]
            return [user for user in found if user is not None]

        return t.cast("list[UserRecord]", self._call(everyone))

    # -- failed logins (a sorted set per key, scored by time) ------------------------

    def record_failure(self, key: str, at: float, window_seconds: float) -> None:
        name = _failures_key(key)

        def record() -> None:
            with self._redis.pipeline() as pipe:
                pipe.zadd(name, {f"{at!r}:{uuid.uuid4().hex[:8]}": at})
                pipe.zremrangebyscore(name, "-inf", at - window_seconds)
                pipe.expire(name, max(int(window_seconds) + 1, 1))
                pipe.execute()

        self._call(record)

    def recent_failures(self, key: str, since: float) -> list[float]:
        found = self._call(lambda: self._redis.zrangebyscore(_failures_key(key), f"({since!r}", "+inf",
                                                              withscores=True))
        return [score for _, score in found]

    def clear_failures(self, key: str) -> None:
        self._call(lambda: self._redis.delete(_failures_key(key)))


def _failures_key(key: str) -> str:
    return f"{NAMESPACE}:failures:{key}"


def _user_key(name: str) -> str:
    return f"{NAMESPACE}:user:{name}"


def _user_fields(user: UserRecord) -> dict[str, t.Any]:
    return {"password_hash": user.password_hash, "api_key_hashes": json.dumps(list(user.api_key_hashes)),
            "created": user.created}


def _user(name: str, row: t.Mapping[str, str]) -> UserRecord | None:
    if not row or "created" not in row:
        return None
    return UserRecord(name=name, password_hash=row["password_hash"],
                      api_key_hashes=tuple(json.loads(row.get("api_key_hashes", "[]"))), created=float(row["created"]))


def _fields(document: StoredDocument) -> dict[str, t.Any]:
    """A whole write: the snapshot is the document at its version."""
    return {"owner": document.owner, "doc_json": document.doc_json, "title": document.title,
            "public": int(document.public), "version": document.version, "updated": document.updated,
            "snapshot_version": document.version, "size": len(document.doc_json.encode("utf-8"))}


def _document(docid: str, row: t.Mapping[str, str]) -> StoredDocument | None:
    if not row:
        return None
    return StoredDocument(docid=docid, owner=row["owner"], doc_json=row["doc_json"], title=row.get("title", ""),
                          public=row.get("public") == "1", version=int(row["version"]),
                          updated=float(row.get("updated", 0)))
