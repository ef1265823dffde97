"""ApplicationContext: creating sessions once, lifecycle hooks, unused-session cleanup."""
from __future__ import annotations

import asyncio
import concurrent.futures
import textwrap
import threading
import time

import pytest
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler
from bokeh.models import Div

from bokeh_flask.core.contexts import ApplicationContext
from bokeh_flask.core.errors import SessionError
from bokeh_flask.core.loading import application_from_path
from bokeh_flask.core.scheduling import ThreadScheduler
from bokeh_flask.core.settings import ServerSettings
from bokeh_flask.core.state import BokehState
from tests.support.clock import ManualScheduler


def simple_app(built: list | None = None) -> Application:
    def modify(doc):
        if built is not None:
            built.append(doc)
        doc.add_root(Div(text="hi"))

    return Application(FunctionHandler(modify))


def test_session_is_built_once_per_id():
    built: list = []
    context = ApplicationContext(simple_app(built), "/app", ManualScheduler())
    first = context.create_session_if_needed("abc")
    second = context.create_session_if_needed("abc")
    assert first is second and len(built) == 1
    assert context.documents_built == 1


def test_concurrent_creation_of_one_id_builds_one_document():
    """Two greenlets ask for the same id while the app is still building it."""
    gevent = pytest.importorskip("gevent")
    from bokeh_flask.runtime.greenlets import GeventScheduler

    built: list = []

    def slow_modify(doc):
        built.append(doc)
        gevent.sleep(0.05)  # the app waits on I/O while building
        doc.add_root(Div(text="slow"))

    context = ApplicationContext(Application(FunctionHandler(slow_modify)), "/app", GeventScheduler())
    jobs = [gevent.spawn(context.create_session_if_needed, "same-id") for _ in range(5)]
    gevent.joinall(jobs, timeout=5, raise_error=True)
    sessions = {id(job.value) for job in jobs}
    assert len(built) == 1 and len(sessions) == 1


def test_failing_app_raises_session_error_and_can_be_retried(caplog):
    attempts = []

    def broken(doc):
        attempts.append(1)
        raise RuntimeError("bad app")

    context = ApplicationContext(Application(FunctionHandler(broken)), "/broken", ManualScheduler())
    for _ in range(2):
        with pytest.raises(SessionError, match="failed to build its document"):
            context.create_session_if_needed("x")
    assert len(attempts) == 2 and context.sessions == []
    assert "bad app" in caplog.text


def write_lifecycle_app(tmp_path, hooks_source: str):
    app_dir = tmp_path / "lifecycle_app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("from bokeh.io import curdoc\nfrom bokeh.models import Div\n"
                                     "curdoc().add_root(Div(text='main'))\n")
    (app_dir / "server_lifecycle.py").write_text(textwrap.dedent(hooks_source))
    return application_from_path(str(app_dir))


def test_async_session_hooks_are_awaited(tmp_path):
    log_file = tmp_path / "hooks.log"
    app = write_lifecycle_app(tmp_path, f"""
        import asyncio
        async def on_session_created(session_context):
            await asyncio.sleep(0.01)
            with open({str(log_file)!r}, "a") as f:
                f.write("created " + session_context.id + "\\n")
        async def on_session_destroyed(session_context):
            await asyncio.sleep(0.01)
            with open({str(log_file)!r}, "a") as f:
                f.write("destroyed " + session_context.id + "\\n")
    """)
    clock = ManualScheduler()
    context = ApplicationContext(app, "/lifecycle_app", clock)
    session = context.create_session_if_needed("s1")
    assert log_file.read_text().splitlines() == ["created s1"]
    session.request_expiration()
    context.cleanup_unused(lifetime_ms=15_000)
    clock.advance(0)
    assert log_file.read_text().splitlines() == ["created s1", "destroyed s1"]
    assert context.sessions == []


def test_unused_sessions_are_discarded_after_their_lifetime_only():
    clock = ManualScheduler()
    destroyed: list[str] = []

    def modify(doc):
        doc.on_session_destroyed(lambda ctx: destroyed.append(ctx.id))

    context = ApplicationContext(Application(FunctionHandler(modify)), "/app", clock)
    idle = context.create_session_if_needed("idle")
    busy = context.create_session_if_needed("busy")
    busy.subscribe(object())  # a connection that stays open
    clock.advance(10.0)
    assert context.cleanup_unused(lifetime_ms=15_000) == 0
    clock.advance(6.0)
    assert context.cleanup_unused(lifetime_ms=15_000) == 1
    clock.advance(0)
    assert destroyed == ["idle"]
    assert [s.id for s in context.sessions] == ["busy"]
    assert idle.destroyed and not busy.destroyed


def test_a_session_that_comes_back_to_life_is_kept():
    clock = ManualScheduler()
    context = ApplicationContext(simple_app(), "/app", clock)
    session = context.create_session_if_needed("s")
    clock.advance(20.0)
    assert context.cleanup_unused(lifetime_ms=15_000) == 1
    session.subscribe(object())  # a websocket arrived before the discard ran
    clock.advance(0)
    assert context.sessions == [session] and not session.destroyed


def test_cleanup_spreads_discards_over_separate_calls():
    clock = ManualScheduler()
    context = ApplicationContext(simple_app(), "/app", clock)
    for i in range(50):
        context.create_session_if_needed(f"s{i}")
    clock.advance(20.0)
    context.cleanup_unused(lifetime_ms=15_000)
    assert clock.pending == 50  # one scheduled call per session, not one long loop
    assert clock.advance(0) == 50
    assert context.sessions == []


def test_request_reaches_the_session_context_from_the_token():
    from bokeh.util.token import generate_jwt_token

    from bokeh_flask.core.requests import RequestInfo

    seen = {}

    def modify(doc):
        seen["args"] = doc.session_context.request.arguments
        seen["headers"] = doc.session_context.request.headers

    context = ApplicationContext(Application(FunctionHandler(modify)), "/app", ManualScheduler())
    token = generate_jwt_token("sid", extra_payload={"arguments": {"N": [b"3"]}, "headers": {"X-A": "1"},
                                                     "cookies": {}})
    context.create_session_if_needed("sid", RequestInfo(host="elsewhere"), token)
    assert seen["args"] == {"N": [b"3"]}
    assert seen["headers"]["X-A"] == "1"


def test_hooks_may_use_asyncio(tmp_path):
    """Also a sanity check that finish() runs real asyncio work."""
    clock = ManualScheduler()

    async def work():
        await asyncio.sleep(0.01)
        return 5

    assert clock.finish(work()) == 5


class SlowEventScheduler(ThreadScheduler):
    """OS threads, with a thread switch at the worst moment: while a creation event is being made."""

    def event(self):
        time.sleep(0.05)
        return super().event()


def test_concurrent_first_requests_on_threads_build_one_session():
    builds = []
    context = ApplicationContext(Application(FunctionHandler(lambda doc: builds.append(doc))), "/app",
                                 SlowEventScheduler())
    barrier = threading.Barrier(20)

    def first_visit(_: int):
        barrier.wait(timeout=10)
        return context.create_session_if_needed("same-id")

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        sessions = list(pool.map(first_visit, range(20)))
    assert len(builds) == 1
    assert {id(s) for s in sessions} == {id(sessions[0])}


def test_concurrent_requests_on_threads_wait_for_the_server_to_start():
    loaded = []

    class SlowLoad(LifecycleHandler):
        def on_server_loaded(self, server_context):
            time.sleep(0.2)
            loaded.append(time.monotonic())

    state = BokehState({"/app": Application(SlowLoad())}, ServerSettings(), ThreadScheduler())
    barrier = threading.Barrier(10)

    def request(_: int) -> float:
        barrier.wait(timeout=10)
        state.start()
        return time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        returned = list(pool.map(request, range(10)))
    state.stop()
    assert len(loaded) == 1  # on_server_loaded ran once
    assert min(returned) >= loaded[0]  # and no request went on before it had finished
