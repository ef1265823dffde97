"""Published documents in one process and between two, with a recording transport and a manual clock.

Two :class:`Publications` on one store stand for two worker processes; the feed between
them is a list the test delivers by hand, so each step is explicit.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Slider
from bokeh.protocol import Protocol

from bokeh_flask.core.connection import ServerConnection
from bokeh_flask.core.changes import decode_change, encode_change, materialize
from bokeh_flask.core.publications import Publications
from bokeh_flask.core.store import MemoryStore, StoreError
from tests.support.clock import ManualScheduler
from tests.support.recording import RecordingTransport, feed_message


class ListFeed:
    """What a worker announces, kept for the test to deliver."""

    def __init__(self) -> None:
        self.sent = []

    def publish(self, change) -> None:
        self.sent.append(change)

    def start(self, deliver, watched) -> None:
        self.deliver, self.watched = deliver, watched

    def stop(self) -> None:
        pass


def make_document(value: float = 1.0) -> Document:
    doc = Document()
    doc.add_root(Slider(start=0, end=10, value=value, name="slider"))
    doc.add_root(ColumnDataSource(data={"y": np.arange(3, dtype="float64")}, name="cds"))
    doc.title = "Quarterly"
    return doc


send = feed_message


@pytest.fixture
def world():
    clock = ManualScheduler()
    store = MemoryStore(max_document_bytes=200_000)
    feeds = (ListFeed(), ListFeed())
    workers = [Publications(store, clock, feed, origin=name) for feed, name in zip(feeds, ("a", "b"))]
    for worker in workers:
        worker.start()
    return clock, store, workers, feeds


def connect(session, user: str | None):
    transport = RecordingTransport(flush=lambda: session.scheduler.advance(0))
    connection = ServerConnection(session, transport)
    if user is not None:
        session.allow_writes(connection, user)
    connection.start()
    return connection, transport


def push(workers, user="alice", doc=None):
    session = workers[0].live("quarterly", None)
    connection, transport = connect(session, user)
    document = doc or make_document()
    send(connection, Protocol().create("PUSH-DOC", document))
    return session, connection, transport, document


def slider_patch(document: Document, value: float):
    """The PATCH-DOC a client sends after moving the slider (made by bokeh itself)."""
    events = []
    document.on_change(lambda event: events.append(event))
    document.get_model_by_name("slider").value = value
    return Protocol().create("PATCH-DOC", events)


def test_an_owner_push_is_stored_whole_and_reaches_viewers(world):
    clock, store, workers, feeds = world
    session, _, transport, _ = push(workers)
    assert transport.types()[-1] == "OK"
    stored = store.get("quarterly")
    assert stored.owner == "alice" and stored.version == 1 and stored.title == "Quarterly"
    assert materialize(stored).get_model_by_name("slider").value == 1.0
    assert session.version == 1 and feeds[0].sent[-1].version == 1


def test_an_owner_patch_is_stored_then_applied_and_sent_to_other_viewers(world):
    clock, store, workers, feeds = world
    session, owner, _, document = push(workers)
    viewer, viewer_transport = connect(session, None)
    send(owner, slider_patch(document, 7.0))
    stored = store.get("quarterly")
    assert stored.version == 2
    assert materialize(stored).get_model_by_name("slider").value == 7.0
    assert session.document.get_model_by_name("slider").value == 7.0
    header, content = viewer_transport.messages()[-1]
    assert header["msgtype"] == "PATCH-DOC" and content["events"][0]["new"] == 7.0
    assert feeds[0].sent[-1].change is not None


def test_a_read_only_viewers_edit_stays_in_their_page(world):
    clock, store, workers, _ = world
    session, _, owner_transport, document = push(workers)
    viewer, viewer_transport = connect(session, None)
    other, other_transport = connect(session, None)
    sent_before = len(owner_transport.writes)
    send(viewer, slider_patch(make_document(), 9.0))
    assert viewer_transport.types()[-1] == "OK"
    assert session.document.get_model_by_name("slider").value == 1.0
    assert store.get("quarterly").version == 1
    assert len(owner_transport.writes) == sent_before and other_transport.types() == ["ACK"]


def test_a_viewer_cannot_push(world):
    clock, store, workers, _ = world
    session, *_ = push(workers)
    viewer, transport = connect(session, None)
    send(viewer, Protocol().create("PUSH-DOC", make_document(5.0)))
    header, content = transport.messages()[-1]
    assert header["msgtype"] == "ERROR" and "read-only" in content["text"]
    assert store.get("quarterly").version == 1


def test_a_push_over_the_size_cap_writes_nothing(world):
    clock, store, workers, _ = world
    session, owner, transport, _ = push(workers)
    big = make_document()
    big.get_model_by_name("cds").data = {"y": np.random.default_rng(0).random(100_000)}  # incompressible
    send(owner, Protocol().create("PUSH-DOC", big))
    header, content = transport.messages()[-1]
    assert header["msgtype"] == "ERROR" and "max document size" in content["text"]
    assert store.get("quarterly").version == 1
    assert len(session.document.get_model_by_name("cds").data["y"]) == 3


def test_another_users_push_to_a_taken_name_is_refused(world):
    clock, store, workers, _ = world
    push(workers)
    session = workers[0].live("quarterly", store.get("quarterly"))
    mallory, transport = connect(session, "mallory")
    send(mallory, Protocol().create("PUSH-DOC", make_document(3.0)))
    header, content = transport.messages()[-1]
    assert header["msgtype"] == "ERROR" and "belongs to another user" in content["text"]
    assert store.get("quarterly").owner == "alice" and store.get("quarterly").version == 1


def test_another_process_applies_the_change_it_hears_of(world):
    clock, store, workers, feeds = world
    session_a, owner, _, document = push(workers)
    session_b = workers[1].live("quarterly", store.get("quarterly"))
    viewer_b, transport_b = connect(session_b, None)
    send(owner, slider_patch(document, 4.0))
    workers[1].deliver(feeds[0].sent[-1])
    clock.advance(0)
    assert session_b.version == 2 and session_b.document.get_model_by_name("slider").value == 4.0
    header, content = transport_b.messages()[-1]
    assert header["msgtype"] == "PATCH-DOC" and content["events"][0]["new"] == 4.0


def test_a_missed_change_makes_the_other_process_reload(world):
    clock, store, workers, feeds = world
    session_a, owner, _, document = push(workers)
    session_b = workers[1].live("quarterly", store.get("quarterly"))
    send(owner, slider_patch(document, 4.0))
    send(owner, slider_patch(document, 6.0))
    workers[1].deliver(feeds[0].sent[-1])  # version 3 arrives, 2 never did
    clock.advance(0)
    assert session_b.version == 3 and session_b.document.get_model_by_name("slider").value == 6.0


def test_a_write_after_another_process_wrote_catches_up_first(world):
    clock, store, workers, _ = world
    session_a, owner_a, _, document = push(workers)
    session_b = workers[1].live("quarterly", store.get("quarterly"))
    owner_b, _ = connect(session_b, "alice")
    send(owner_a, slider_patch(document, 2.0))  # b has not heard of it
    doc_b = materialize(store.get("quarterly"))
    events = []
    doc_b.on_change(lambda event: events.append(event))
    doc_b.get_model_by_name("cds").data = {"y": np.arange(4, dtype="float64")}
    send(owner_b, Protocol().create("PATCH-DOC", events))
    stored = materialize(store.get("quarterly"))
    assert store.get("quarterly").version == 3
    assert stored.get_model_by_name("slider").value == 2.0 and len(stored.get_model_by_name("cds").data["y"]) == 4
    assert session_b.document.get_model_by_name("slider").value == 2.0


def test_change_text_round_trips_buffers():
    doc = make_document()
    events = []
    doc.on_change(lambda event: events.append(event))
    doc.get_model_by_name("cds").data = {"y": np.arange(5, dtype="float64")}
    message = Protocol().create("PATCH-DOC", events)
    assert message.buffers  # the array travels as a buffer
    copy = make_document()
    copy_ids = Document.from_json(json.loads(json.dumps(doc.to_json(deferred=False))))
    copy_ids.apply_json_patch(decode_change(encode_change(message)))
    assert list(copy_ids.get_model_by_name("cds").data["y"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    del copy


def test_unviewed_documents_are_forgotten(world):
    clock, store, workers, _ = world
    session, owner, _, _ = push(workers)
    owner.detach()
    assert workers[0].cleanup_unused(lifetime_ms=1000) == 0
    clock.advance(2)
    assert workers[0].cleanup_unused(lifetime_ms=1000) == 1
    assert session.destroyed and workers[0].watched() == {}


def test_bad_names_are_refused(world):
    _, store, _, _ = world
    with pytest.raises(StoreError, match="Document names"):
        store.put(__import__("bokeh_flask.core.store", fromlist=["StoredDocument"]).StoredDocument("../x", "a", "{}"), 0)


def test_unpublishing_closes_public_viewers_here_and_in_other_processes(world):
    clock, store, workers, feeds = world
    session_a, owner, owner_transport, document = push(workers)
    workers[0].published_changed(store.set_public("quarterly", True))
    session_b = workers[1].live("quarterly", store.get("quarterly"))
    assert session_b.public and session_b.version == 2
    viewer_a, transport_a = connect(session_a, None)
    viewer_b, transport_b = connect(session_b, None)
    stored = store.set_public("quarterly", False)
    assert stored.version == 3 and stored.doc_json == store.get("quarterly").doc_json
    workers[0].published_changed(stored)
    clock.advance(0)
    assert transport_a.closed[0] == 1008 and session_a.connection_count == 1  # the owner stays
    assert transport_b.closed is None
    workers[1].deliver(feeds[0].sent[-1])
    clock.advance(0)
    assert transport_b.closed[0] == 1008 and session_b.version == 3 and not session_b.public
    send(owner, slider_patch(document, 8.0))  # the owner writes on at the next version, no reload
    assert store.get("quarterly").version == 4 and owner_transport.types()[-1] == "OK"


def test_a_page_view_catches_up_with_a_store_that_is_ahead(world):
    clock, store, workers, feeds = world
    session_a, owner, _, document = push(workers)
    session_b = workers[1].live("quarterly", store.get("quarterly"))
    send(owner, slider_patch(document, 9.0))  # b never hears of it (a lost message)
    again = workers[1].live("quarterly", store.get("quarterly"))
    assert again is session_b and session_b.version == 2
    assert session_b.document.get_model_by_name("slider").value == 9.0


def test_viewers_pulling_one_version_share_one_serialisation(world, monkeypatch):
    import bokeh_flask.core.publications as publications

    clock, store, workers, _ = world
    session, owner, _, document = push(workers)
    made = []
    real = publications.pull_reply
    monkeypatch.setattr(publications, "pull_reply", lambda *a, **k: made.append(1) or real(*a, **k))
    replies = []
    for _ in range(3):
        viewer, transport = connect(session, None)
        send(viewer, Protocol().create("PULL-DOC-REQ"))
        replies.append(transport.messages()[-1])
    assert len(made) == 1
    assert [h["msgtype"] for h, _ in replies] == ["PULL-DOC-REPLY"] * 3
    assert len({h["msgid"] for h, _ in replies}) == 3 and replies[0][1] == replies[2][1]
    send(owner, slider_patch(document, 6.0))
    viewer, transport = connect(session, None)
    send(viewer, Protocol().create("PULL-DOC-REQ"))
    header, content = transport.messages()[-1]
    assert len(made) == 2 and header["reqid"] != replies[0][0]["reqid"]
    pulled = Document.from_json(content["doc"]) if "num_buffers" not in header else None
    if pulled is not None:
        assert pulled.get_model_by_name("slider").value == 6.0


def test_patches_are_appended_and_folded_into_a_snapshot_when_idle(world):
    from bokeh_flask.core import publications

    clock, store, workers, _ = world
    session, owner, _, document = push(workers)
    for value in (3.0, 4.0, 5.0):
        send(owner, slider_patch(document, value))
    stored = store.get("quarterly")
    assert stored.version == 4 and len(stored.pending) == 3  # three changes, no whole-document write
    other = Publications(store, clock, ListFeed(), origin="c").live("quarterly", stored)
    assert other.document.get_model_by_name("slider").value == 5.0  # a reader applies them to the snapshot
    clock.advance(publications.SNAPSHOT_IDLE_SECONDS + 0.1)
    stored = store.get("quarterly")
    assert stored.version == 4 and stored.pending == ()
    assert materialize(stored).get_model_by_name("slider").value == 5.0


def test_many_patches_are_folded_in_without_waiting(world, monkeypatch):
    from bokeh_flask.core import publications

    monkeypatch.setattr(publications, "SNAPSHOT_EVERY_CHANGES", 2)
    clock, store, workers, _ = world
    session, owner, _, document = push(workers)
    send(owner, slider_patch(document, 3.0))
    assert len(store.get("quarterly").pending) == 1
    send(owner, slider_patch(document, 4.0))
    assert store.get("quarterly").pending == () and store.get("quarterly").version == 3


def test_a_patch_that_does_not_apply_is_refused_and_stores_nothing(world):
    clock, store, workers, _ = world
    session, owner, transport, _ = push(workers)
    bad = Protocol().assemble(json.dumps({"msgid": "bad1", "msgtype": "PATCH-DOC"}), "{}", json.dumps(
        {"events": [{"kind": "ModelChanged", "model": {"id": "no-such-model"}, "attr": "value", "new": 1}]}))
    send(owner, bad)
    header, content = transport.messages()[-1]
    assert header["msgtype"] == "ERROR"
    assert store.get("quarterly").version == 1 and store.get("quarterly").pending == ()
