"""TLS (``--ssl-certfile``/``--ssl-keyfile``) and ``--use-xheaders``."""
from __future__ import annotations

import ssl
import subprocess
import sys
import urllib.request

import pytest

from bokeh_flask import create_app
from tests.support.bokeh_ws import BokehWS, models_by_name
from tests.support.servers import EXAMPLES, REPO_ROOT
from tests.support.tls import KEY_PASSWORD, self_signed_certificate

APPS = REPO_ROOT / "tests" / "apps"


def remote_text(app, headers, remote_addr: str = "10.0.0.1") -> str:
    client = app.test_client()
    assert client.get("/remote_app", headers=headers, environ_base={"REMOTE_ADDR": remote_addr}).status_code == 200
    [session] = app.extensions["bokeh"]["bokeh"].context_for("/remote_app").sessions
    return session.document.get_model_by_name("remote").text


@pytest.mark.parametrize("headers, expected", [
    ({"X-Real-Ip": "203.0.113.7", "X-Scheme": "https"}, "ip=203.0.113.7 protocol=https"),
    ({"X-Forwarded-For": "6.6.6.6, 198.51.100.2", "X-Forwarded-Proto": "https"}, "ip=198.51.100.2 protocol=https"),
    ({}, "ip=10.0.0.1 protocol=http"),
])
def test_use_xheaders(headers, expected):
    assert remote_text(create_app([str(APPS / "remote_app.py")], use_xheaders=True), headers) == expected


def test_xheaders_are_ignored_unless_asked():
    app = create_app([str(APPS / "remote_app.py")])
    assert remote_text(app, {"X-Real-Ip": "203.0.113.7", "X-Scheme": "https"}) == "ip=10.0.0.1 protocol=http"


@pytest.mark.parametrize("address, shown", [
    ("::ffff:127.0.0.1", "127.0.0.1"),  # what a dual-stack socket reports for an IPv4 client
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("::1", "::1"),
    ("2001:db8::7", "2001:db8::7"),
])
def test_remote_ip_is_in_bokehs_form(address, shown):
    assert remote_text(create_app([str(APPS / "remote_app.py")]), {}, address) == f"ip={shown} protocol=http"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.mark.slow
@pytest.mark.parametrize("procs", ["1", "2"])
def test_https_and_wss(serve, certificate, monkeypatch, procs):
    cert, key = certificate
    monkeypatch.setenv("BOKEH_SSL_PASSWORD", KEY_PASSWORD)
    server = serve(EXAMPLES / "sliders.py", extra_args=["--ssl-certfile", cert, "--ssl-keyfile", key,
                                                        "--num-procs", procs])
    assert server.output().count("Bokeh app running at: https://") == 1
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with urllib.request.urlopen(f"https://localhost:{server.port}/sliders", context=context, timeout=20) as page:
        assert page.status == 200 and b'"token":' in page.read()
    ws = BokehWS.connect(f"https://localhost:{server.port}", "sliders",
                         sslopt={"cert_reqs": ssl.CERT_NONE, "check_hostname": False})
    with ws:
        assert ws.recv_message().msgtype == "ACK"
        assert "product" in models_by_name(ws.pull().content["doc"])


def test_bad_certificate_is_a_startup_error(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    result = subprocess.run([sys.executable, "-m", "bokeh_flask", "serve", "--port", "0", "--ssl-certfile", str(bad)],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "Cannot use the SSL certificate" in lines[0]


@pytest.mark.slow
def test_use_xheaders_with_several_processes(serve):
    server = serve(APPS / "remote_app.py", extra_args=["--use-xheaders", "--num-procs", "2"])
    for _ in range(4):  # the document is built where the websocket lands, from that request's headers
        with BokehWS.connect(server, "remote_app", headers=["X-Real-Ip: 203.0.113.7", "X-Scheme: https"]) as ws:
            assert ws.recv_message().msgtype == "ACK"
            text = models_by_name(ws.pull().content["doc"])["remote"]["attributes"]["text"]
        assert text == "ip=203.0.113.7 protocol=https"
