"""Document stores: one suite for every backend (memory; the file store, also across processes)."""
from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest

from bokeh_flask.core.store import (DocumentChange, MemoryStore, StoreConflict, StoredDocument, StoreError,
                                    StoreUnavailable)
from bokeh_flask.core.users import UserRecord, api_key_hash
from bokeh_flask.runtime.stores.files import KEPT_CHANGES, FileStore
from tests.support.redis_server import RedisServer




@pytest.fixture(params=["memory", "file", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryStore(max_document_bytes=10_000)
    if request.param == "file":
        return FileStore(tmp_path / "data", max_document_bytes=10_000)
    from bokeh_flask.runtime.stores.redis_store import RedisStore

    server = request.getfixturevalue("redis_server")
    import redis

    redis.Redis.from_url(server.url).flushdb()
    return RedisStore(server.url, max_document_bytes=10_000)


def doc(docid: str = "quarterly", owner: str = "alice", text: str = "{}", **extra) -> StoredDocument:
    return StoredDocument(docid=docid, owner=owner, doc_json=text, **extra)


def test_versions_grow_and_stale_writes_are_refused(store):
    first = store.put(doc(text='{"v": 1}', title="Q1"), based_on=0)
    assert first.version == 1 and store.get("quarterly") == first
    second = store.put(doc(text='{"v": 2}', title="Q1"), based_on=1)
    assert second.version == 2 and store.get("quarterly").doc_json == '{"v": 2}'
    with pytest.raises(StoreConflict, match="at version 2, not 1: pull it"):
        store.put(doc(text='{"v": "lost"}'), based_on=1)
    with pytest.raises(StoreConflict, match="at version 2, not 0"):
        store.put(doc(text="{}"), based_on=0)  # a second "new" document of the same name
    assert store.get("quarterly").doc_json == '{"v": 2}'


def test_only_the_owner_writes(store):
    store.put(doc(), based_on=0)
    with pytest.raises(StoreConflict, match="belongs to another user"):
        store.put(doc(owner="mallory", text='{"x": 1}'), based_on=1)
    assert store.get("quarterly").owner == "alice" and store.get("quarterly").doc_json == "{}"


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a b", "-x", "x" * 129, "é"])
def test_bad_names_are_refused(store, name):
    with pytest.raises(StoreError, match="Document names are"):
        store.put(doc(docid=name), based_on=0)
    assert store.list() == []


def test_a_document_over_the_size_cap_is_refused_and_nothing_is_written(store):
    store.put(doc(text='{"small": true}'), based_on=0)
    with pytest.raises(StoreError, match="over the 10000 bytes"):
        store.put(doc(text=json.dumps({"big": "x" * 20_000})), based_on=1)
    kept = store.get("quarterly")
    assert kept.version == 1 and kept.doc_json == '{"small": true}'


def test_publishing_listing_and_deleting(store):
    store.put(doc("a", "alice"), based_on=0)
    store.put(doc("b", "alice"), based_on=0)
    store.put(doc("c", "bob"), based_on=0)
    published = store.set_public("b", True)
    assert published.public is True and published.version == 2  # a version of its own: every process hears of it
    assert store.get("b").doc_json == store.get("a").doc_json  # the snapshot itself is unchanged
    assert [d.docid for d in store.list(owner="alice")] == ["a", "b"]
    assert [d.docid for d in store.list(public=True)] == ["b"]
    assert store.put(doc("b", "alice"), based_on=2).public is True  # a new version stays published
    assert store.delete("a") is True and store.delete("a") is False
    assert [d.docid for d in store.list()] == ["b", "c"]
    with pytest.raises(StoreError, match="No document 'zz'"):
        store.set_public("zz", True)


def test_the_file_store_survives_a_restart(tmp_path):
    FileStore(tmp_path).put(doc(text='{"kept": 1}'), based_on=0)
    again = FileStore(tmp_path)  # a new process would open it the same way
    assert again.get("quarterly").doc_json == '{"kept": 1}' and again.get("quarterly").version == 1


def change(n: int) -> str:
    return json.dumps({"content": {"events": [{"kind": "ModelChanged", "new": n}]}, "buffers": []})


def test_every_backend_takes_the_change_with_a_write(store):
    assert store.put(doc(), based_on=0, change=None).version == 1
    assert store.put(doc(text='{"v": 2}'), based_on=1, change=change(2)).version == 2
    assert store.get("quarterly").doc_json == '{"v": 2}'


@pytest.fixture(params=["memory", "file"])
def logged_store(request, tmp_path):
    """The stores that answer ``versions`` and ``changes_since``."""
    if request.param == "memory":
        return MemoryStore()
    return FileStore(tmp_path / "data")


def test_versions_answers_for_every_name_asked(logged_store):
    logged_store.put(doc("a"), based_on=0)
    logged_store.put(doc("a"), based_on=1)
    logged_store.put(doc("b"), based_on=0)
    assert logged_store.versions(["a", "b", "missing"]) == {"a": 2, "b": 1, "missing": 0}
    assert logged_store.versions(iter(["b"])) == {"b": 1} and logged_store.versions([]) == {}
    assert logged_store.changes_since("a", 2) == [] and logged_store.changes_since("missing", 0) == []


def test_the_memory_store_keeps_no_changes():
    store = MemoryStore()
    store.put(doc(), based_on=0)
    store.put(doc(), based_on=1, change=change(2))
    assert store.changes_since("quarterly", 1) is None and store.changes_since("quarterly", 2) == []


def test_the_file_store_records_each_change_with_its_version(tmp_path):
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0, change=change(1))
    store.put(doc(text='{"v": 2}'), based_on=1, change=change(2))
    store.put(doc(text='{"v": 3}'), based_on=2, change=change(3))
    assert store.changes_since("quarterly", 0) == [DocumentChange("quarterly", v, change(v), "") for v in (1, 2, 3)]
    assert store.changes_since("quarterly", 2) == [DocumentChange("quarterly", 3, change(3), "")]
    assert FileStore(tmp_path).changes_since("quarterly", 1)[0].change == change(2)  # kept in the file


def test_a_write_without_its_change_is_a_gap_readers_must_reload_across(tmp_path):
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0, change=change(1))
    store.put(doc(), based_on=1)  # version 2: a PUSH-DOC, say, with no patch to replay
    store.put(doc(), based_on=2, change=change(3))
    assert store.changes_since("quarterly", 0) is None and store.changes_since("quarterly", 1) is None
    assert store.changes_since("quarterly", 2) == [DocumentChange("quarterly", 3, change(3), "")]


def test_a_deleted_document_takes_its_changes_with_it(tmp_path):
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0, change=change(1))
    store.put(doc(), based_on=1, change=change(2))
    store.put(doc("other"), based_on=0, change=change(1))
    assert store.delete("quarterly") is True
    assert _change_rows(tmp_path, "quarterly") == [] and _change_rows(tmp_path, "other") == [1]
    assert store.changes_since("quarterly", 2) is None  # the reader had version 2: the document is gone
    store.put(doc(), based_on=0, change=change(1))  # a new document of the same name
    assert store.changes_since("quarterly", 2) is None
    assert store.changes_since("quarterly", 0) == [DocumentChange("quarterly", 1, change(1), "")]


def test_only_the_latest_changes_are_kept(tmp_path):
    store = FileStore(tmp_path)
    store.put(doc("other"), based_on=0, change=change(1))
    writes = KEPT_CHANGES + 5
    for version in range(1, writes + 1):
        store.put(doc(), based_on=version - 1, change=change(version))
    assert _change_rows(tmp_path, "quarterly") == list(range(6, writes + 1))
    assert _change_rows(tmp_path, "other") == [1]
    assert store.changes_since("quarterly", 4) is None  # version 5 was trimmed
    kept = store.changes_since("quarterly", 5)
    assert [c.version for c in kept] == list(range(6, writes + 1)) and kept[-1].change == change(writes)


def test_a_refused_write_records_no_change(tmp_path):
    store = FileStore(tmp_path, max_document_bytes=10_000)
    store.put(doc(), based_on=0, change=change(1))
    with pytest.raises(StoreConflict):
        store.put(doc(), based_on=0, change="stale")
    with pytest.raises(StoreConflict):
        store.put(doc(owner="mallory"), based_on=1, change="not theirs")
    with pytest.raises(StoreError, match="over the 10000 bytes"):
        store.put(doc(text=json.dumps({"big": "x" * 20_000})), based_on=1, change="too big")
    assert _change_rows(tmp_path, "quarterly") == [1] and store.changes_since("quarterly", 1) == []


def test_the_change_and_the_document_are_written_in_one_transaction(tmp_path):
    store = FileStore(tmp_path)
    store.put(doc(text='{"v": 1}'), based_on=0, change=change(1))
    db = sqlite3.connect(tmp_path / "documents.sqlite3")
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON changes BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="disk full"):
        store.put(doc(text='{"v": 2}'), based_on=1, change=change(2))
    kept = store.get("quarterly")
    assert kept.version == 1 and kept.doc_json == '{"v": 1}' and store.versions(["quarterly"]) == {"quarterly": 1}


def _change_rows(directory, docid: str) -> list[int]:
    db = sqlite3.connect(directory / "documents.sqlite3")
    try:
        return [v for (v,) in db.execute("SELECT version FROM changes WHERE docid = ? ORDER BY version", (docid,))]
    finally:
        db.close()


def _open(kind: str, where: str):
    if kind == "file":
        return FileStore(where)
    from bokeh_flask.runtime.stores.redis_store import RedisStore

    return RedisStore(where)


def _increment(kind: str, where: str, times: int) -> None:
    """Read-modify-write a counter, retrying on conflicts, as a worker pushing changes does."""
    store = _open(kind, where)
    for _ in range(times):
        while True:
            current = store.get("counter")
            value = json.loads(current.doc_json)["n"]
            try:
                store.put(doc("counter", text=json.dumps({"n": value + 1})), based_on=current.version)
                break
            except StoreConflict:
                continue


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_several_processes_writing_at_once_lose_nothing(tmp_path, request, kind):
    if kind == "redis":
        import redis

        where = request.getfixturevalue("redis_server").url
        redis.Redis.from_url(where).flushdb()
    else:
        where = str(tmp_path)
    _open(kind, where).put(doc("counter", text='{"n": 0}'), based_on=0)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_increment, args=(kind, where, 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    final = _open(kind, where).get("counter")
    assert json.loads(final.doc_json) == {"n": 100} and final.version == 101


def test_redis_gone_and_back_loses_nothing(tmp_path):
    """Redis stopped under a store: calls say so (and write nothing); once it is back, everything is there."""
    from bokeh_flask.runtime.stores.redis_store import RedisStore

    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        store = RedisStore(server.url)
        store.put(doc(text='{"kept": 1}'), based_on=0)
        server.stop()
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            store.put(doc(text='{"lost": 1}'), based_on=1)
        with pytest.raises(StoreUnavailable):
            store.get("quarterly")
        server.start()  # the same port and data directory
        kept = store.get("quarterly")
        assert kept.doc_json == '{"kept": 1}' and kept.version == 1
        assert store.put(doc(text='{"v": 2}'), based_on=1).version == 2
    finally:
        server.stop()


def user(name: str = "alice", password_hash: str | None = None) -> UserRecord:
    return UserRecord(name=name, password_hash=password_hash or "hash-of-" + name)


def test_users_are_added_once_saved_listed_and_removed(store):
    added = store.add_user(user())
    assert added.created > 0 and store.get_user("alice") == added
    with pytest.raises(StoreConflict, match="exists already"):
        store.add_user(user(password_hash="other"))
    assert store.get_user("alice").password_hash == "hash-of-alice"
    keyed = store.save_user(UserRecord("alice", "new-hash", (api_key_hash("k1"),), added.created))
    assert store.get_user("alice") == keyed and store.get_user("alice").api_key_hashes == (api_key_hash("k1"),)
    store.add_user(user("bob"))
    assert [u.name for u in store.list_users()] == ["alice", "bob"]
    assert store.remove_user("alice") is True and store.remove_user("alice") is False
    assert store.get_user("alice") is None and [u.name for u in store.list_users()] == ["bob"]
    with pytest.raises(StoreError, match="No user 'carol'"):
        store.save_user(user("carol"))


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 65, "../x"])
def test_bad_user_names_are_refused(store, name):
    with pytest.raises(StoreError, match="User names are"):
        store.add_user(user(name))
    assert store.list_users() == []


def test_failed_logins_are_shared_through_the_store(store, tmp_path):
    """The file store and Redis keep failures for every process; the limiter counts them there."""
    from bokeh_flask.core.ratelimit import LoginLimiter, MemoryFailureLog, failure_log_of

    log = failure_log_of(store)
    if isinstance(store, MemoryStore):
        assert isinstance(log, MemoryFailureLog)  # one process: memory is the place
        return
    assert log is store
    now = [1000.0]
    limiter = LoginLimiter(log, max_failures=3, window_seconds=60, clock=lambda: now[0])
    other_process = LoginLimiter(failure_log_of(type(store)(*_same_place(store))), max_failures=3,
                                 window_seconds=60, clock=lambda: now[0])
    limiter.failed("user:alice")
    other_process.failed("user:alice")
    assert limiter.retry_after("user:alice") == 0
    now[0] += 10
    other_process.failed("user:alice", "address:1.2.3.4")
    assert limiter.retry_after("user:alice") == pytest.approx(50.0)  # the first failure leaves the window then
    assert limiter.retry_after("address:1.2.3.4") == 0
    now[0] += 51
    assert limiter.retry_after("user:alice") == 0
    other_process.failed("user:alice")
    other_process.failed("user:alice")
    assert limiter.retry_after("user:alice") > 0
    limiter.succeeded("user:alice")
    assert other_process.retry_after("user:alice") == 0


def _same_place(store):
    """What opens another handle on the same store (another process would do the same)."""
    return (store.directory,) if hasattr(store, "directory") else (store.url,)


def test_publishing_is_recorded_as_a_change_the_other_processes_read(tmp_path):
    from bokeh_flask.core.store import published_flag

    store = FileStore(tmp_path / "data")
    store.put(doc(), based_on=0, change=change(1))
    store.set_public("quarterly", True)
    changes = FileStore(tmp_path / "data").changes_since("quarterly", 1)  # what another process's poll reads
    assert [(c.version, published_flag(c.change)) for c in changes] == [(2, True)]


def test_changes_append_to_a_snapshot_until_the_next_one(store):
    """A patch is one appended change (no whole-document write); a snapshot folds them in."""
    from bokeh_flask.core.store import StoreConflict as Conflict

    store.put(doc(text='{"v": 1}'), based_on=0)
    assert store.append("quarterly", "alice", 1, change(1)).version == 2
    assert store.append("quarterly", "alice", 2, change(2)).version == 3
    stored = store.get("quarterly")
    assert (stored.doc_json, stored.pending, stored.snapshot_version) == ('{"v": 1}', (change(1), change(2)), 1)
    with pytest.raises(Conflict, match="at version 3, not 2"):
        store.append("quarterly", "alice", 2, change(9))
    with pytest.raises(Conflict, match="belongs to another user"):
        store.append("quarterly", "mallory", 3, change(9))
    with pytest.raises(StoreError, match="No document"):
        store.append("missing", "alice", 0, change(9))
    with pytest.raises(StoreError, match="max document size"):  # the snapshot and its changes count together
        store.append("quarterly", "alice", 3, "x" * 10_000)
    assert store.get("quarterly").version == 3
    assert store.snapshot("quarterly", 2, '{"v": "stale"}', "Old") is False  # the document has moved on
    assert store.snapshot("quarterly", 3, '{"v": 3}', "Q3") is True
    stored = store.get("quarterly")
    assert (stored.doc_json, stored.pending, stored.version, stored.title) == ('{"v": 3}', (), 3, "Q3")
    store.append("quarterly", "alice", 3, change(4))
    assert store.put(doc(text='{"v": "whole"}'), based_on=4).pending == ()  # a whole write drops the changes
    assert store.get("quarterly").pending == () and store.get("quarterly").doc_json == '{"v": "whole"}'
    assert store.delete("quarterly") and store.get("quarterly") is None
