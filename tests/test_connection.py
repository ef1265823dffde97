"""ServerConnection + ServerSession with a recording transport (no sockets)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.protocol import Protocol

from bokeh.protocol.receiver import Receiver

from bokeh_flask.core.connection import SETTLE_SECONDS, ProtocolViolation, ServerConnection
from bokeh_flask.core.messages import REPULL_KEEPS_BUFFERS, message_frames, pull_reply
from bokeh_flask.core.scheduling import run_sync
from bokeh_flask.core.sessions import ServerSession
from tests.support.clock import ManualScheduler
from tests.support.recording import RecordingTransport, feed_message


@pytest.fixture
def served():
    clock = ManualScheduler()
    doc = Document()
    slider = Slider(start=0, end=10, value=1, name="slider")
    div = Div(text="x=1", name="div")
    slider.on_change("value", lambda attr, old, new: setattr(div, "text", f"x={new}"))
    doc.add_root(slider)
    doc.add_root(div)
    doc.add_root(ColumnDataSource(data={"y": np.arange(5, dtype="float64")}, name="cds"))
    session = ServerSession("sid", doc, clock)
    return clock, session, doc


def connect(session: ServerSession) -> tuple[ServerConnection, RecordingTransport]:
    transport = RecordingTransport(flush=lambda: session.scheduler.advance(0))
    connection = ServerConnection(session, transport)
    connection.start()
    return connection, transport


send = feed_message


def client_patch(doc_json_model_id: str, value) -> object:
    """A PATCH-DOC as a client would send it, built by hand."""
    protocol = Protocol()
    header = {"msgid": "c1", "msgtype": "PATCH-DOC"}
    content = {"events": [{"kind": "ModelChanged", "model": {"id": doc_json_model_id}, "attr": "value", "new": value}]}
    return protocol.assemble(json.dumps(header), "{}", json.dumps(content))


def test_ack_is_sent_first(served):
    _, session, _ = served
    _, transport = connect(session)
    assert transport.types() == ["ACK"]
    assert session.connection_count == 1


def test_pull_reply_carries_arrays_as_the_bokehjs_in_use_keeps_them(served):
    """Binary buffers with BokehJS 3.10 on; inline before, where BokehJS drops a re-pull's buffers (bokeh#15347)."""
    _, session, _ = served
    connection, transport = connect(session)
    send(connection, Protocol().create("PULL-DOC-REQ"))
    header, content = transport.messages()[-1]
    assert header["msgtype"] == "PULL-DOC-REPLY"
    if REPULL_KEEPS_BUFFERS:
        assert header["num_buffers"] == 1 and len(transport.writes[-1]) == 5
    else:
        assert "num_buffers" not in header and len(transport.writes[-1]) == 3
        pulled = Document.from_json(content["doc"])
        assert list(pulled.get_model_by_name("cds").data["y"]) == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("binary", [True, False])
def test_pull_replies_both_ways_load_the_document(served, binary):
    _, _, doc = served
    reply = pull_reply("r1", doc, binary=binary)
    separate_buffers = hasattr(doc.to_json(deferred=True), "buffers")  # bokeh >= 3.7; 3.6 inlines arrays itself
    assert len(reply.buffers) == (1 if binary and separate_buffers else 0)
    frames = message_frames(reply)
    receiver = Receiver(Protocol())
    for frame in frames:
        message = run_sync(receiver.consume(frame))
    pulled = Document()
    message.push_to_document(pulled)
    assert list(pulled.get_model_by_name("cds").data["y"]) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_patch_is_applied_not_echoed_and_callback_result_is_sent_back(served):
    _, session, doc = served
    slider = doc.get_model_by_name("slider")
    a, a_out = connect(session)
    b, b_out = connect(session)
    send(a, client_patch(slider.id, 7))
    assert slider.value == 7
    assert doc.get_model_by_name("div").text == "x=7"
    # the originator gets only the callback's change, then OK
    (patch_header, patch), (ok_header, _) = a_out.messages()[-2:]
    assert patch_header["msgtype"] == "PATCH-DOC"
    assert [e["attr"] for e in patch["events"]] == ["text"]
    assert ok_header["msgtype"] == "OK" and ok_header["reqid"] == "c1"
    # the other connection sees both changes, in one message
    header, content = b_out.messages()[-1]
    assert header["msgtype"] == "PATCH-DOC"
    assert sorted(e["attr"] for e in content["events"]) == ["text", "value"]


def test_error_reply_names_the_problem_without_traceback(served):
    _, session, _ = served
    connection, transport = connect(session)
    send(connection, client_patch("no-such-model", 3))
    header, content = transport.messages()[-1]
    assert header["msgtype"] == "ERROR" and header["reqid"] == "c1"
    assert "PATCH-DOC failed" in content["text"]
    assert content["traceback"] is None
    assert connection.open


@pytest.mark.parametrize("fragments", [
    ["not json", "{}", "{}"],
    [b"binary where the header is due"],
    ['{"msgid": "1"}', "{}", "{}"],
    ['{"msgid": "1", "msgtype": "NO-SUCH-TYPE"}', "{}", "{}"],
    ['{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": 1}', "{}", '{"events": []}', '{"wrong": 1}'],
])
def test_protocol_violations_raise(served, fragments):
    _, session, _ = served
    connection, _ = connect(session)
    with pytest.raises(ProtocolViolation):
        for fragment in fragments:
            connection.receive(fragment)


def test_client_may_not_send_server_messages(served):
    _, session, _ = served
    connection, _ = connect(session)
    with pytest.raises(ProtocolViolation, match="may not send OK"):
        send(connection, Protocol().create("OK", "x"))


def test_a_dead_transport_detaches_its_connection(served):
    _, session, doc = served
    a, a_out = connect(session)
    b, b_out = connect(session)
    b_out.fail_writes = True
    send(a, client_patch(doc.get_model_by_name("slider").id, 4))
    assert a_out.types()[-1] == "OK"  # runs the writers
    assert not b.open and b_out.aborted
    assert session.connection_count == 1


def test_messages_wait_in_the_outbox_and_leave_in_order(served):
    """Sending never writes under the document lock: the connection's writer task does, in order."""
    clock, session, doc = served
    connection = ServerConnection(session, RecordingTransport())
    transport = connection._transport
    connection.start()
    div = doc.get_model_by_name("div")
    session.with_document_locked(setattr, div, "text", "one")
    session.with_document_locked(setattr, div, "text", "two")
    assert transport._writes == [] and connection.queued_bytes > 0  # nothing written yet
    clock.advance(0)
    assert transport.types() == ["ACK", "PATCH-DOC", "PATCH-DOC"]
    assert [c["events"][0]["new"] for _, c in transport.messages()[1:]] == ["one", "two"]
    assert connection.queued_bytes == 0


def test_a_client_that_stops_reading_is_closed_and_the_others_go_on(served):
    clock, session, doc = served
    reader, reader_out = connect(session)
    stalled_out = RecordingTransport(flush=lambda: clock.advance(0))
    stalled = ServerConnection(session, stalled_out, max_write_stall_seconds=5)
    stalled.start()
    stalled_out.stalled_seconds = 6.0  # its last write has been stuck for 6 s
    div = doc.get_model_by_name("div")
    session.with_document_locked(setattr, div, "text", "tick")
    assert not stalled.open and session.connection_count == 1
    assert stalled_out.closed == (1008, "client too slow: not reading its messages")
    assert session.stats.slow_clients_closed == 1
    session.with_document_locked(setattr, div, "text", "tock")
    assert reader_out.types()[-2:] == ["PATCH-DOC", "PATCH-DOC"]  # the reader got both
    assert not stalled_out.aborted  # the close frame was taken: no need to cut it off
    clock.advance(5)
    assert not stalled_out.aborted


def test_a_client_too_many_bytes_behind_is_closed_without_its_backlog(served):
    clock, session, doc = served
    out = RecordingTransport()
    connection = ServerConnection(session, out, max_queued_bytes=2000)
    connection.start()
    div = doc.get_model_by_name("div")
    for n in range(20):  # the writer task never gets to run: the client is not reading
        session.with_document_locked(setattr, div, "text", f"text {n} " + "x" * 100)
    assert not connection.open
    clock.advance(0)
    assert out._writes == [] and out.closed[0] == 1008  # the backlog was dropped, the close sent


class StuckTransport(RecordingTransport):
    """Each write blocks while ``clock`` moves on by ``seconds`` (a client that does not read)."""

    def __init__(self, clock: ManualScheduler, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def close(self, code: int, reason: str) -> None:
        self.clock.advance(self.seconds)  # other tasks run meanwhile, as they would under gevent
        super().close(code, reason)


def test_a_close_frame_that_cannot_be_written_ends_in_an_abort(served):
    clock, session, doc = served
    out = StuckTransport(clock, seconds=3.0)
    connection = ServerConnection(session, out, max_write_stall_seconds=2)
    connection.start()
    out.stalled_seconds = 3.0
    connection.send_ping()  # a keep-alive notices the stall, and never waits for the socket
    assert not connection.open and not out.aborted
    clock.advance(0)  # the writer starts on the close frame, which the client does not take
    assert out.aborted  # 2 s later the connection was cut off


def test_periodic_callback_changes_go_to_every_connection(served):
    clock, session, doc = served
    div = doc.get_model_by_name("div")
    _, a_out = connect(session)
    _, b_out = connect(session)
    doc.add_periodic_callback(lambda: setattr(div, "text", f"t={clock.now():.1f}"), 100)
    clock.advance(0.25)
    for out in (a_out, b_out):
        texts = [e["new"] for h, c in out.messages() if h["msgtype"] == "PATCH-DOC" for e in c["events"]]
        assert texts == ["t=0.1", "t=0.2"]


def test_new_models_reach_every_connection(served):
    """Each recipient gets the definition of a model added by a callback."""
    clock, session, doc = served
    _, a_out = connect(session)
    _, b_out = connect(session)
    doc.add_next_tick_callback(lambda: doc.add_root(Div(text="new", name="added")))
    clock.advance(0)
    for out in (a_out, b_out):
        header, content = out.messages()[-1]
        event = content["events"][0]
        assert event["kind"] == "RootAdded"
        assert event["model"].get("type") == "object" and event["model"]["attributes"]["text"] == "new"


def test_detach_fires_connection_lost_and_unsubscribes(served):
    _, session, doc = served
    lost = []
    from bokeh.events import ConnectionLost

    doc.on_event(ConnectionLost, lambda event: lost.append(event))
    connection, _ = connect(session)
    connection.detach()
    connection.detach()
    clock = served[0]
    clock.advance(0)
    assert session.connection_count == 0
    assert len(lost) == 1


def test_draining_closes_a_settled_connection_at_once_with_1001(served):
    _, session, _ = served
    connection, transport = connect(session)
    send(connection, Protocol().create("PULL-DOC-REQ"))
    connection.close_when_settled()
    assert transport.closed == (1001, "server shutting down")
    assert session.connection_count == 0


def test_draining_lets_a_loading_page_have_its_first_reply_before_1001(served):
    _, session, _ = served
    connection, transport = connect(session)
    connection.close_when_settled()  # the process stops while the page is still loading
    assert transport.closed is None
    send(connection, Protocol().create("PULL-DOC-REQ"))
    assert transport.types() == ["ACK", "PULL-DOC-REPLY"]
    assert transport.closed == (1001, "server shutting down")


def test_draining_closes_a_connection_that_stayed_silent(served, monkeypatch):
    _, session, _ = served
    connection, transport = connect(session)
    connection.close_when_settled()
    assert transport.closed is None
    monkeypatch.setattr(connection, "opened_at", connection.opened_at - SETTLE_SECONDS)
    connection.close_when_settled()
    assert transport.closed == (1001, "server shutting down")


class ForeignThreadScheduler(ManualScheduler):
    """The manual clock, seen from an OS thread that is not the server's loop."""

    def in_loop_thread(self) -> bool:
        return False


def test_a_change_from_another_thread_goes_out_under_the_lock():
    """A document changed directly from a user's thread is not written from that thread: the
    scheduler sends it, under the document lock, like every other change."""
    clock = ForeignThreadScheduler()
    doc = Document()
    div = Div(text="before", name="div")
    doc.add_root(div)
    session = ServerSession("sid", doc, clock)
    out = RecordingTransport()
    connection = ServerConnection(session, out)
    connection.start()
    clock.advance(0)
    div.text = "from a thread"  # no lock held, not the loop's thread
    assert out._writes[-1][0].count("ACK") == 1  # nothing written yet
    locked = []
    original = session.with_document_locked
    session.with_document_locked = lambda *a, **k: (locked.append(True), original(*a, **k))[1]
    clock.advance(0)
    assert locked and out.types()[-1] == "PATCH-DOC"
    assert out.messages()[-1][1]["events"][0]["new"] == "from a thread"
