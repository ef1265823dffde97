"""Change feeds with real components: the file store written by another process, and a real redis-server."""
from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import time

import pytest

from bokeh_flask.core.errors import ConfigError
from bokeh_flask.core.store import DocumentChange, MemoryStore, StoredDocument
from bokeh_flask.runtime.feeds import CHANNEL, LocalFeed, PollingFeed, RedisFeed, make_feed
from bokeh_flask.runtime.stores.files import FileStore
from tests.support.redis_server import RedisServer

WAIT = 10.0  # seconds any one expected delivery may take


def doc(text: str = "{}") -> StoredDocument:
    return StoredDocument(docid="live", owner="alice", doc_json=text)


def change(n: int) -> str:
    return json.dumps({"content": {"events": [{"kind": "ModelChanged", "new": n}]}, "buffers": []})


class Receiver:
    """What a process serving documents live does with a feed: keeps versions, applies what arrives."""

    def __init__(self, store=None, versions: dict[str, int] | None = None) -> None:
        self.store = store
        self.versions = dict(versions or {})
        self.received: queue.Queue[DocumentChange] = queue.Queue()

    def deliver(self, item: DocumentChange) -> None:
        if item.change is None and self.store is not None:  # reload
            current = self.store.get(item.docid)
            self.versions[item.docid] = current.version if current is not None else 0
        elif item.change is not None:
            self.versions[item.docid] = item.version
        self.received.put(item)

    def watched(self) -> dict[str, int]:
        return dict(self.versions)

    def next(self) -> DocumentChange:
        try:
            return self.received.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"nothing was delivered within {WAIT} s")

    def nothing_more(self, within: float) -> None:
        """Assert that nothing (else) is delivered within ``within`` seconds."""
        try:
            extra = self.received.get(timeout=within)
        except queue.Empty:
            return
        pytest.fail(f"unexpected delivery: {extra}")


def _write(directory: str, writes: list[tuple[int, str | None]], delete: bool = False) -> None:
    """Another process's writes to the file store: (based_on, change text or None) each."""
    store = FileStore(directory)
    for based_on, text in writes:
        store.put(doc(json.dumps({"v": based_on + 1})), based_on=based_on, change=text)
    if delete:
        store.delete("live")


def in_another_process(directory, writes, delete: bool = False) -> None:
    process = multiprocessing.get_context("spawn").Process(target=_write, args=(str(directory), writes, delete))
    process.start()
    process.join(60)
    assert process.exitcode == 0


@pytest.fixture
def feeds():
    """Feeds made by a test, stopped after it."""
    made: list = []
    yield made
    for feed in made:
        feed.stop()


# -- the file store: PollingFeed -------------------------------------------------


def polling(tmp_path, feeds):
    """A stored document served live at version 1, and a running PollingFeed telling a Receiver."""
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0)
    receiver = Receiver(store, {"live": 1})
    feed = PollingFeed(store, origin="here", interval=0.05)
    feeds.append(feed)
    feed.start(receiver.deliver, receiver.watched)
    return store, receiver, feed


def test_polling_delivers_another_processes_writes_in_order_with_their_changes(tmp_path, feeds):
    store, receiver, feed = polling(tmp_path, feeds)
    in_another_process(tmp_path, [(1, change(2)), (2, change(3))])
    assert receiver.next() == DocumentChange("live", 2, change(2), "")
    assert receiver.next() == DocumentChange("live", 3, change(3), "")
    receiver.nothing_more(within=0.3)  # several polls: nothing is delivered twice


def test_polling_across_a_change_not_kept_delivers_one_reload(tmp_path, feeds):
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0)
    receiver = Receiver(store, {"live": 1})
    in_another_process(tmp_path, [(1, None), (2, change(3))])  # version 2 came without its change
    feed = PollingFeed(store, origin="here", interval=0.05)  # started after both: one poll sees them
    feeds.append(feed)
    feed.start(receiver.deliver, receiver.watched)
    assert receiver.next() == DocumentChange("live", 3, None, "")
    assert receiver.versions == {"live": 3}  # reloaded
    in_another_process(tmp_path, [(3, change(4))])
    assert receiver.next() == DocumentChange("live", 4, change(4), "")
    in_another_process(tmp_path, [], delete=True)
    assert receiver.next() == DocumentChange("live", 0, None, "")


def test_polling_skips_this_processes_own_writes(tmp_path, feeds):
    store, receiver, feed = polling(tmp_path, feeds)
    written = store.put(doc(), based_on=1, change=change(2))  # here, not yet applied to what is served
    feed.publish(DocumentChange("live", written.version, change(2), "here"))
    in_another_process(tmp_path, [(2, change(3))])
    assert receiver.next() == DocumentChange("live", 3, change(3), "")
    receiver.nothing_more(within=0.3)


def test_a_receiver_still_applying_is_not_sent_the_same_changes_again(tmp_path, feeds):
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0)
    received: queue.Queue[DocumentChange] = queue.Queue()
    feed = PollingFeed(store, origin="here", interval=0.05)
    feeds.append(feed)
    feed.start(received.put, lambda: {"live": 1})  # it applies later: the version it has stays at 1
    in_another_process(tmp_path, [(1, change(2))])
    assert received.get(timeout=WAIT).version == 2
    in_another_process(tmp_path, [(2, change(3))])
    assert received.get(timeout=WAIT).version == 3  # not 2 again
    with pytest.raises(queue.Empty):
        received.get(timeout=0.3)


def test_a_failing_deliver_does_not_end_the_polling(tmp_path, feeds):
    store = FileStore(tmp_path)
    store.put(doc(), based_on=0)
    receiver = Receiver(store, {"live": 1})
    calls: list[int] = []

    def deliver(item: DocumentChange) -> None:
        calls.append(item.version)
        if len(calls) == 1:
            raise RuntimeError("a bug in the receiver")
        receiver.deliver(item)

    feed = PollingFeed(store, origin="here", interval=0.05)
    feeds.append(feed)
    feed.start(deliver, receiver.watched)
    in_another_process(tmp_path, [(1, change(2))])
    in_another_process(tmp_path, [(2, change(3))])
    assert receiver.next().version == 3 and calls == [2, 3]
    assert feed.running


def test_stopping_the_polling_feed_ends_its_thread(tmp_path):
    feed = PollingFeed(FileStore(tmp_path), origin="here", interval=0.05)
    feed.start(lambda item: None, dict)
    assert feed.running
    started = time.monotonic()
    feed.stop()
    assert not feed.running and time.monotonic() - started < 1


# -- Redis: RedisFeed ------------------------------------------------------------




def subscribers(url: str) -> int:
    """How many connections listen on the feed's channel (0 while Redis is down)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return int(dict(client.pubsub_numsub(CHANNEL))[CHANNEL.encode()])
        finally:
            client.close()
    except redis.ConnectionError:
        return 0


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT} s")
        time.sleep(0.02)  # polled with a deadline


def test_redis_delivers_other_processes_changes_and_skips_its_own(redis_server, feeds):
    here, there = RedisFeed(redis_server.url, "here"), RedisFeed(redis_server.url, "there")
    feeds.extend([here, there])
    receiver = Receiver()
    here.start(receiver.deliver, receiver.watched)
    wait_for(lambda: subscribers(redis_server.url) >= 1, "the subscription")
    here.publish(DocumentChange("live", 2, change(2), ""))  # this process's own: not delivered back
    there.publish(DocumentChange("live", 3, change(3), ""))
    there.publish(DocumentChange("live", 4, None, ""))
    assert receiver.next() == DocumentChange("live", 3, change(3), "there")
    assert receiver.next() == DocumentChange("live", 4, None, "there")
    receiver.nothing_more(within=0.3)


def test_a_message_that_is_not_a_change_is_ignored(redis_server, feeds):
    import redis

    receiver = Receiver()
    here = RedisFeed(redis_server.url, "here")
    feeds.append(here)
    here.start(receiver.deliver, receiver.watched)
    wait_for(lambda: subscribers(redis_server.url) >= 1, "the subscription")
    redis.Redis.from_url(redis_server.url).publish(CHANNEL, b"not json")
    RedisFeed(redis_server.url, "there").publish(DocumentChange("live", 5, change(5), ""))
    assert receiver.next().version == 5 and here.running


def test_redis_gone_and_back_resyncs_every_watched_document(tmp_path, feeds, caplog):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        receiver = Receiver(versions={"live": 3, "other": 1})
        here, there = RedisFeed(server.url, "here"), RedisFeed(server.url, "there")
        feeds.extend([here, there])
        here.start(receiver.deliver, receiver.watched)
        wait_for(lambda: subscribers(server.url) >= 1, "the subscription")
        with caplog.at_level(logging.INFO, logger="bokeh_flask.runtime.feeds"):
            server.stop()
            there.publish(DocumentChange("live", 4, change(4), ""))  # lost, and says so; does not raise
            wait_for(lambda: any("Lost Redis" in r.message for r in caplog.records), "noticing Redis is gone")
            server.start()  # the same port and data
            resynced = {receiver.next(), receiver.next()}
            assert resynced == {DocumentChange("live", 0, None, ""), DocumentChange("other", 0, None, "")}
            there.publish(DocumentChange("live", 5, change(5), ""))  # the publisher reconnects too
            assert receiver.next() == DocumentChange("live", 5, change(5), "there")
        lost = [r for r in caplog.records if "Lost Redis" in r.message]
        assert len(lost) == 1 and lost[0].levelno == logging.WARNING  # once, though it retried several times
        assert any("Publishing version 4 of 'live'" in r.message for r in caplog.records)
    finally:
        server.stop()


def test_stopping_the_redis_feed_ends_its_thread_promptly_even_while_redis_is_down(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        feed = RedisFeed(server.url, "here")
        feed.start(lambda item: None, dict)
        wait_for(lambda: subscribers(server.url) >= 1, "the subscription")
        started = time.monotonic()
        feed.stop()
        assert not feed.running and time.monotonic() - started < 1
        wait_for(lambda: subscribers(server.url) == 0, "the subscription's end")

        down = RedisFeed(server.url, "here")
        server.stop()
        down.start(lambda item: None, dict)
        assert down.running
        started = time.monotonic()
        down.stop()
        assert not down.running and time.monotonic() - started < 3
    finally:
        server.stop()


def test_a_feed_starts_once():
    feed = PollingFeed(MemoryStore(), origin="here")
    feed.start(lambda item: None, dict)
    try:
        with pytest.raises(RuntimeError, match="started already"):
            feed.start(lambda item: None, dict)
    finally:
        feed.stop()


def test_make_feed_picks_the_backends_feed(tmp_path, redis_server):
    assert isinstance(make_feed("memory", MemoryStore(), "here"), LocalFeed)
    store = FileStore(tmp_path)
    polling = make_feed("shelve", store, "here")
    assert isinstance(polling, PollingFeed) and polling.store is store and polling.origin == "here"
    redis_feed = make_feed("redis", None, "here", redis_server.url)
    assert isinstance(redis_feed, RedisFeed) and redis_feed.url == redis_server.url
    redis_feed.stop()
    with pytest.raises(ConfigError, match="--backend must be one of memory, shelve, redis"):
        make_feed("mongo", None, "here")


def test_a_sibling_write_wakes_the_poll_at_once(tmp_path, feeds):
    """With a shared directory a write is found without waiting for the interval (30 s here)."""
    shared = tmp_path / "relay"
    shared.mkdir()
    store = FileStore(tmp_path / "data")
    store.put(doc(), based_on=0)
    receiver = Receiver(store, {"live": 1})
    here = PollingFeed(store, origin="here", interval=30)
    writer = PollingFeed(FileStore(tmp_path / "data"), origin="there", interval=30)
    feeds.extend([here, writer])
    here.share_directory(str(shared))
    writer.share_directory(str(shared))
    here.start(receiver.deliver, receiver.watched)
    writer.start(lambda change: None, dict)
    assert sorted(p.name for p in shared.iterdir()) == ["here.nudge", "there.nudge"]
    written = writer.store.put(doc(), based_on=1, change=change(2))
    writer.publish(DocumentChange("live", written.version, change(2), "there"))
    assert receiver.next() == DocumentChange("live", 2, change(2), "")  # waits at most a few seconds
    here.stop()
    writer.stop()
    assert list(shared.iterdir()) == []  # the sockets go with their feeds
