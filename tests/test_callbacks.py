"""Session callbacks on a manual clock: timing, no overlap, removal by id."""
from __future__ import annotations

from bokeh.document import Document

from bokeh_flask.core.sessions import ServerSession
from tests.support.clock import ManualScheduler


def make_session(scheduler: ManualScheduler) -> tuple[ServerSession, Document]:
    doc = Document()
    return ServerSession("s1", doc, scheduler), doc


def test_periodic_callback_runs_every_period():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    runs: list[float] = []
    doc.add_periodic_callback(lambda: runs.append(clock.now()), 100)
    clock.advance(0.05)
    assert runs == []
    clock.advance(0.5)
    assert [round(r, 6) for r in runs] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_slow_periodic_run_delays_the_next_instead_of_overlapping():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    starts: list[float] = []
    active = []

    def slow() -> None:
        assert not active, "a periodic run started while the previous one was running"
        active.append(1)
        starts.append(clock.now())
        clock.spend(0.25)  # takes 2.5 periods
        active.pop()

    doc.add_periodic_callback(slow, 100)
    clock.advance(1.0)
    gaps = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
    assert gaps and all(g == 0.25 for g in gaps)


def test_timeout_and_next_tick_run_once_and_forget_themselves():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    calls: list[str] = []
    doc.add_timeout_callback(lambda: calls.append("timeout"), 300)
    doc.add_next_tick_callback(lambda: calls.append("tick"))
    clock.advance(0.0)
    assert calls == ["tick"]
    clock.advance(0.299)
    assert calls == ["tick"]
    clock.advance(0.002)
    assert calls == ["tick", "timeout"]
    clock.advance(5)
    assert calls == ["tick", "timeout"]
    assert session.callback_count == 0


def test_remove_by_id_stops_future_runs():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    runs: list[int] = []
    cb = doc.add_periodic_callback(lambda: runs.append(1), 100)
    timeout = doc.add_timeout_callback(lambda: runs.append(99), 500)
    clock.advance(0.25)
    doc.remove_periodic_callback(cb)
    doc.remove_timeout_callback(timeout)
    clock.advance(2.0)
    assert runs == [1, 1]
    assert session.callback_count == 0


def test_callback_removing_itself_is_not_interrupted():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    done: list[str] = []
    holder = {}

    def once_then_stop() -> None:
        doc.remove_periodic_callback(holder["cb"])
        done.append("finished")

    holder["cb"] = doc.add_periodic_callback(once_then_stop, 100)
    clock.advance(1.0)
    assert done == ["finished"]


def test_callbacks_added_before_the_session_exists_are_scheduled():
    clock = ManualScheduler()
    doc = Document()
    runs: list[int] = []
    doc.add_periodic_callback(lambda: runs.append(1), 100)
    ServerSession("s1", doc, clock)
    clock.advance(0.35)
    assert runs == [1, 1, 1]


def test_a_raising_callback_is_logged_and_keeps_its_schedule(caplog):
    clock = ManualScheduler()
    session, doc = make_session(clock)
    runs: list[int] = []

    def boom() -> None:
        runs.append(1)
        raise ValueError("app bug")

    doc.add_periodic_callback(boom, 100)
    clock.advance(0.35)
    assert len(runs) == 3
    assert "app bug" in caplog.text


def test_destroy_cancels_every_callback():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    runs: list[int] = []
    doc.add_periodic_callback(lambda: runs.append(1), 100)
    doc.add_timeout_callback(lambda: runs.append(2), 150)
    session.destroy()
    clock.advance(1.0)
    assert runs == []
    assert clock.pending == 0


def test_async_callback_is_awaited_under_the_lock():
    import asyncio

    clock = ManualScheduler()
    session, doc = make_session(clock)
    from bokeh.io import curdoc
    from bokeh.models import Div

    div = Div(text="before")
    doc.add_root(div)
    seen = {}

    async def update() -> None:
        await asyncio.sleep(0.01)
        seen["curdoc"] = curdoc()
        div.text = "after"

    doc.add_next_tick_callback(update)
    clock.advance(0)
    assert div.text == "after"
    assert seen["curdoc"] is doc


def test_without_document_lock_runs_unlocked():
    from bokeh.document import without_document_lock

    clock = ManualScheduler()
    session, doc = make_session(clock)
    outcome = []

    @without_document_lock
    def unlocked() -> None:
        # the lock is not reentrant: taking it here only works if the callback does not hold it
        outcome.append(session.with_document_locked(lambda: "took the lock"))

    doc.add_next_tick_callback(unlocked)
    clock.advance(0)
    assert outcome == ["took the lock"]


def test_periodic_runs_keep_to_their_timeline_despite_late_wakeups():
    clock = ManualScheduler()
    session, doc = make_session(clock)
    starts: list[float] = []

    clock.wakeup_latency = 0.004  # every timer fires 4 ms late (a loaded event loop)
    doc.add_periodic_callback(lambda: starts.append(clock.now()), 100)
    clock.advance(10.05)
    assert len(starts) == 100  # not 96, as when every period grows by the latency
