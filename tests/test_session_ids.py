"""``--session-ids unsigned | signed | external-signed`` against a live server."""
from __future__ import annotations

import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import websocket
from bokeh.util.token import (check_session_id_signature, generate_jwt_token, generate_secret_key,
                              generate_session_id, get_session_id)

from tests.support.bokeh_ws import BokehWS
from tests.support.client import pull_texts
from tests.support.servers import REPO_ROOT

APP = REPO_ROOT / "tests" / "apps" / "argv_app.py"
KEY = generate_secret_key()
pytestmark = pytest.mark.slow


def status_of(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def signing_env(monkeypatch):
    monkeypatch.setenv("BOKEH_SECRET_KEY", KEY)
    monkeypatch.delenv("BOKEH_SIGN_SESSIONS", raising=False)


def test_signed_mode_makes_signed_ids_and_refuses_forged_ones(serve, signing_env):
    server = serve(APP, extra_args=["--session-ids", "signed"])
    url = server.app_url("argv_app")
    status, page = status_of(url)
    assert status == 200
    session_id = get_session_id(re.search(r'"token":"([^"]+)"', page).group(1))
    assert check_session_id_signature(session_id, secret_key=KEY.encode(), signed=True)

    assert status_of(f"{url}?bokeh-session-id=made-up")[0] == 403
    good_id = generate_session_id(secret_key=KEY.encode(), signed=True)
    assert status_of(f"{url}?bokeh-session-id={good_id}")[0] == 200
    other_key_id = generate_session_id(secret_key=generate_secret_key().encode(), signed=True)
    assert status_of(f"{url}?bokeh-session-id={other_key_id}")[0] == 403

    # websockets: a token signed with the key opens; unsigned or tampered ones are refused before the upgrade
    token = generate_jwt_token(good_id, secret_key=KEY.encode(), signed=True)
    with BokehWS.connect(server, "argv_app", token=token) as ws:
        assert ws.recv_message().msgtype == "ACK"
    for bad in (generate_jwt_token(generate_session_id()), token[:-3] + "abc", token.split(".")[0]):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            BokehWS.connect(server, "argv_app", token=bad)
        assert refused.value.status_code == 403
    server.wait_for_output(r"invalid signature")


def test_bokeh_client_works_with_signed_ids(serve, signing_env, monkeypatch):
    server = serve(APP, extra_args=["--session-ids", "signed"])
    monkeypatch.setenv("BOKEH_SIGN_SESSIONS", "yes")  # how bokeh.client learns to sign its ids
    result = pull_texts(server.app_url("argv_app"))
    assert check_session_id_signature(result["session_id"], secret_key=KEY.encode(), signed=True)
    assert result["texts"]["argv"].startswith("ARGV=")


def test_external_signed_mode_never_generates_ids(serve, signing_env):
    server = serve(APP, extra_args=["--session-ids", "external-signed"])
    url = server.app_url("argv_app")
    status, body = status_of(url)
    assert status == 403 and "No bokeh-session-id provided" in body
    good_id = generate_session_id(secret_key=KEY.encode(), signed=True)
    assert status_of(f"{url}?bokeh-session-id={good_id}")[0] == 200
    assert status_of(f"{url}?bokeh-session-id=unsigned")[0] == 403


@pytest.mark.parametrize("env, message", [
    ({}, "Signed session ids need a secret key"),
])
def test_signing_without_a_good_key_is_a_startup_error(env, message, monkeypatch):
    monkeypatch.delenv("BOKEH_SECRET_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run([sys.executable, "-m", "bokeh_flask", "serve", str(APP), "--session-ids", "signed",
                             "--port", "0"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_short_random_key_signs_sessions_as_under_bokeh_serve(serve):
    """``secrets.token_hex(16)`` keys were refused at start-up; bokeh accepts them, and so does this server."""
    key = secrets.token_hex(16)
    server = serve(APP, extra_args=["--session-ids", "signed"], env={"BOKEH_SECRET_KEY": key})
    url = server.app_url("argv_app")
    signed = generate_session_id(secret_key=key.encode(), signed=True)
    assert status_of(f"{url}?bokeh-session-id={signed}")[0] == 200
    assert status_of(f"{url}?bokeh-session-id=unsigned")[0] == 403


def test_expired_token_reconnects_to_a_live_session_only(serve):
    server = serve(APP)
    live_id = generate_session_id()
    fresh = generate_jwt_token(live_id)
    with BokehWS.connect(server, "argv_app", token=fresh) as ws:  # creates the session
        assert ws.recv_message().msgtype == "ACK"
    expired = generate_jwt_token(live_id, expiration=-10)
    with BokehWS.connect(server, "argv_app", token=expired) as ws:  # a reconnect after a long idle
        assert ws.recv_message().msgtype == "ACK"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        BokehWS.connect(server, "argv_app", token=generate_jwt_token(generate_session_id(), expiration=-10))
    assert refused.value.status_code == 403
    server.wait_for_output(r"Token is expired")


def test_use_config_supplies_the_secret_key(serve, tmp_path, monkeypatch):
    monkeypatch.delenv("BOKEH_SECRET_KEY", raising=False)
    monkeypatch.delenv("BOKEH_SIGN_SESSIONS", raising=False)
    config = tmp_path / "bokeh.yaml"
    config.write_text(f"secret_key: {KEY}\nsign_sessions: true\n")
    server = serve(APP, extra_args=["--use-config", config])
    status, page = status_of(server.app_url("argv_app"))
    session_id = get_session_id(re.search(r'"token":"([^"]+)"', page).group(1))
    assert status == 200 and check_session_id_signature(session_id, secret_key=KEY.encode(), signed=True)
    assert status_of(server.app_url("argv_app") + "?bokeh-session-id=forged")[0] == 403
