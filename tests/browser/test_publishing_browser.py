"""Publishing in a real browser: two users, public links, read-only viewers, several workers, restarts, Redis.

The owner publishes with ``bokeh_flask.client.Session`` (in this process, as a script would);
viewers are Chromium pages running BokehJS.
"""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from bokeh.document import Document  # noqa: E402
from bokeh.models import Div, Slider  # noqa: E402

from bokeh_flask.client import PublishError, Session  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWER_PID = re.compile(r"Viewer of (\S+) connected to process (\d+)")


def quarterly(note: str = "first", value: float = 2.0) -> Document:
    doc = Document()
    doc.add_root(Slider(start=0, end=10, step=1, value=value, title="knob", name="knob", css_classes=["knob"]))
    doc.add_root(Div(text=note, name="note", css_classes=["note"]))
    doc.title = "Quarterly"
    return doc


def set_note(session: Session, doc: Document, text: str) -> None:
    doc.get_model_by_name("note").text = text
    session.push(doc)


def status_of(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_two_users_a_public_link_and_a_read_only_viewer(serve, browser, tmp_path, console):
    server = serve(extra_args=["--multi-user", "--data-directory", tmp_path / "data"])
    alice = Session(server.browser_url, keys_dir=tmp_path / "alice")
    alice.register("alice", "alice's password")
    doc = quarterly()
    alice.use_doc("quarterly").push(doc)
    alice.publish()

    bob_context = browser.new_context()
    bob = bob_context.new_page()
    bob.on("console", console._on_console)
    bob.on("pageerror", console._on_page_error)
    bob.goto(f"{server.browser_url}/bokeh/register")
    bob.fill("#username", "bob")
    bob.fill("#password", "bob's password")
    bob.click("#submit")
    expect(bob.locator("#public")).to_contain_text("Quarterly")
    assert bob.request.get(f"{server.browser_url}/bokeh/doc/quarterly").status == 403  # not his
    bob.goto(alice.public_url)
    note = bob.locator(".note")
    expect(note).to_have_text("first")

    # bob moves the slider: his page changes, the stored document does not
    bob.locator(".knob .noUi-handle").press("ArrowRight")
    expect(bob.locator(".knob")).to_contain_text("3")
    set_note(alice, doc, "second")  # a round trip after bob's edit reached the server
    expect(note).to_have_text("second")
    pulled = alice.pull()
    assert pulled.get_model_by_name("knob").value == 2.0
    expect(bob.locator(".knob")).to_contain_text("3")

    owner_context = browser.new_context()
    owner = owner_context.new_page()
    owner.goto(f"{server.browser_url}/bokeh/login")
    owner.fill("#username", "alice")
    owner.fill("#password", "alice's password")
    owner.click("#submit")
    owner.goto(alice.doc_url)
    expect(owner.locator(".knob")).to_contain_text("2")
    owner.locator(".knob .noUi-handle").press("ArrowRight")  # the owner's own page edits the stored document
    expect(owner.locator(".knob")).to_contain_text("3")
    for _ in range(50):
        if alice.pull().get_model_by_name("knob").value == 3.0:
            break
    assert alice.pull().get_model_by_name("knob").value == 3.0

    alice.unpublish()
    assert status_of(alice.public_url)[0] == 404  # anonymous: not revealed
    # bob's open page is cut off (1008) and may not reconnect: the link is no longer published
    # (each evaluate() lets Playwright deliver the page's console events)
    wait_until(lambda: bob.evaluate("1") and any("403" in e and "public=true" in e for e in console.errors), 15)
    set_note(alice, doc, "private again")
    expect(owner.locator(".note")).to_have_text("private again")
    expect(note).to_have_text("second")
    bob_context.close()
    owner_context.close()
    alice.close()
    console.assert_clean(ignore=[r"/bokeh/doc/quarterly/ws\?public=true.*403", "Could not open websocket"])


def open_viewers_on_both_workers(server, browser, url: str, text: str, limit: int = 10):
    """Open public viewers until two worker processes serve at least one each."""
    pages, pids = [], set()
    for _ in range(limit):
        mark = server.mark()
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        expect(page.locator(".note")).to_have_text(text)
        pid = server.wait_for_output(VIEWER_PID, since=mark).group(2)
        pages.append((context, page, pid))
        pids.add(pid)
        if len(pids) == 2:
            return pages
    pytest.fail(f"{limit} viewers all landed in worker(s) {pids}")


@pytest.mark.parametrize("backend", ["redis", "shelve"])
def test_a_change_through_one_worker_reaches_pages_of_the_other(serve, browser, tmp_path, backend, console):
    args = ["--num-procs", "2", "--backend", backend, "--data-directory", tmp_path / "data"]
    redis = None
    if backend == "redis":
        redis = RedisServer(tmp_path / "redis")
        redis.start()
        args += ["--redis-url", redis.url]
    try:
        server = serve(extra_args=args)
        owner = Session(server.browser_url, keys_dir=tmp_path / "keys")
        doc = quarterly()
        owner.use_doc("quarterly").push(doc)
        owner.publish()
        viewers = open_viewers_on_both_workers(server, browser, owner.public_url, "first")
        for step in range(3):
            set_note(owner, doc, f"update {step}")
            for _, page, _ in viewers:
                expect(page.locator(".note")).to_have_text(f"update {step}")
        mark = server.mark()
        owner.unpublish()  # every worker closes its public viewers, not only the one that stored it
        for pid in {pid for _, _, pid in viewers}:
            server.wait_for_output(rf"Closed \d+ public viewer\(s\) of quarterly in process {pid}\b", since=mark)
        for context, _, _ in viewers:
            context.close()
        owner.close()
    finally:
        if redis is not None:
            redis.stop()


@pytest.mark.parametrize("backend", ["shelve", "redis"])
def test_a_restart_keeps_the_documents(serve, page, tmp_path, backend, console):
    args = ["--backend", backend, "--data-directory", tmp_path / "data"]
    if backend == "redis":
        args += ["--redis-port", str(free_port())]  # bokeh-flask starts (and stops) its own redis-server
    server = serve(extra_args=args)
    owner = Session(server.browser_url, keys_dir=tmp_path / "keys")
    owner.use_doc("kept").push(quarterly("survives"))
    owner.close()
    server.stop()
    again = serve(extra_args=args)
    page.goto(f"{again.browser_url}/bokeh/doc/kept")
    expect(page.locator(".note")).to_have_text("survives")
    console.assert_clean()


def free_port() -> int:
    from tests.support.redis_server import free_port as port

    return port()


def test_redis_stopped_and_restarted_under_a_live_server(serve, page, tmp_path, console):
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        server = serve(extra_args=["--backend", "redis", "--redis-url", redis.url])
        owner = Session(server.browser_url, keys_dir=tmp_path / "keys")
        doc = quarterly()
        owner.use_doc("quarterly").push(doc)
        owner.publish()
        page.goto(owner.public_url)
        expect(page.locator(".note")).to_have_text("first")

        redis.stop()
        status, body = status_of(f"{server.browser_url}/bokeh/doc/quarterly?public=true")
        assert status == 503 and "cannot be reached" in body and "Nothing stored is lost" in body
        with pytest.raises(PublishError, match="cannot be reached"):
            set_note(owner, doc, "while redis is down")
        expect(page.locator(".note")).to_have_text("first")  # nothing half-written reached the viewers

        redis.start()
        assert status_of(f"{server.browser_url}/bokeh/doc/quarterly?public=true")[0] == 200
        set_note(owner, doc, "after redis came back")
        expect(page.locator(".note")).to_have_text("after redis came back")
        owner.close()
    finally:
        redis.stop()
    console.assert_clean(ignore=[r"HTTP 503"])
