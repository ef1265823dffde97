"""The periodic jobs of one registration, on a manual clock."""
from __future__ import annotations

from bokeh.application import Application

from bokeh_flask.core.settings import ServerSettings
from bokeh_flask.core.state import BokehState
from tests.support.clock import ManualScheduler


class CountingConnection:
    def __init__(self) -> None:
        self.pings = 0

    def send_ping(self) -> None:
        self.pings += 1

    def close(self, code: int, reason: str) -> None:
        self.closed = code

    def wait_written(self, timeout: float) -> bool:
        return True


def make_state(**settings) -> tuple[BokehState, ManualScheduler]:
    clock = ManualScheduler()
    state = BokehState({"/app": Application()}, ServerSettings(**settings), clock)
    state.start()
    return state, clock


def test_keep_alive_pings_every_interval():
    state, clock = make_state(keep_alive_milliseconds=1000)
    connection = CountingConnection()
    state.connections.add(connection)
    clock.advance(3.5)
    assert connection.pings == 3
    state.stop()
    assert connection.closed == 1001  # going away


def test_keep_alive_zero_sends_no_pings():
    state, clock = make_state(keep_alive_milliseconds=0)
    connection = CountingConnection()
    state.connections.add(connection)
    clock.advance(100)
    assert connection.pings == 0
    state.stop()


def test_cleanup_runs_every_check_interval_and_stop_ends_every_job():
    state, clock = make_state(check_unused_sessions_milliseconds=500, unused_session_lifetime_milliseconds=1000)
    context = state.context_for("/app")
    context.create_session_if_needed("s1")
    clock.advance(0.9)
    assert len(context.sessions) == 1
    clock.advance(0.7)  # a check after the lifetime has passed
    assert context.sessions == []
    context.create_session_if_needed("s2")
    state.stop()
    assert context.sessions == []  # stop discards what is left
    assert clock.pending == 0
