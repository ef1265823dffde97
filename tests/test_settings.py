"""Settings precedence and validation, origin matching, session id rules."""
from __future__ import annotations

import secrets

import pytest
from bokeh.util.token import generate_jwt_token, generate_secret_key, generate_session_id, get_token_payload

from bokeh_flask.core.errors import ConfigError, PermissionDenied
from bokeh_flask.core.origins import origin_allowed
from bokeh_flask.core.requests import RequestInfo
from bokeh_flask.core.settings import ServerSettings, env_websocket_origins
from bokeh_flask.core.tokens import check_token, requested_session, token_for

SECRET = generate_secret_key()


def test_precedence_kwargs_then_config_then_environment(monkeypatch):
    config = {"BOKEH_KEEP_ALIVE_MILLISECONDS": 5, "BOKEH_PREFIX": "cfg", "BOKEH_COOKIE_SECRET": "from-config"}
    for name, value in {"BOKEH_SECRET_KEY": SECRET, "BOKEH_SIGN_SESSIONS": "yes", "BOKEH_ICO_PATH": "none",
                        "BOKEH_COOKIE_SECRET": "from-env", "BOKEH_XSRF_COOKIES": "true"}.items():
        monkeypatch.setenv(name, value)
    s = ServerSettings.resolve({"prefix": "kw/"}, config)
    assert s.prefix == "/kw"
    assert s.keep_alive_milliseconds == 5
    assert s.sign_sessions is True and s.secret_key == SECRET.encode()
    assert s.ico_path == "none" and s.xsrf_cookies is True
    assert s.cookie_secret == "from-config"  # app.config over the environment
    monkeypatch.delenv("BOKEH_SIGN_SESSIONS")
    assert ServerSettings.resolve({}, {}).keep_alive_milliseconds == 37_000


def test_bokeh_config_file_is_read_through_bokeh_settings(monkeypatch, tmp_path):
    """``--use-config`` files reach every entry point, because settings are read through bokeh.settings."""
    from bokeh.settings import settings as bokeh_settings

    config = tmp_path / "bokeh.yaml"
    config.write_text("cookie_secret: from-yaml\nxsrf_cookies: true\n")
    monkeypatch.setattr(bokeh_settings, "_config_override", {})
    bokeh_settings.load_config(str(config))
    s = ServerSettings.resolve({})
    assert s.cookie_secret == "from-yaml" and s.xsrf_cookies is True
    assert ServerSettings.resolve({"cookie_secret": "kw"}).cookie_secret == "kw"


def test_unset_bokeh_settings_leave_the_defaults():
    s = ServerSettings.resolve({})
    assert s.ico_path is None and s.secret_key is None and s.sign_sessions is False


@pytest.mark.parametrize("overrides, message", [
    ({"check_unused_sessions_milliseconds": 0}, "must be > 0"),
    ({"keep_alive_milliseconds": -1}, "use 0 to turn it off"),
    ({"include_headers": ["a"], "exclude_headers": ["b"]}, "not both"),
    ({"sign_sessions": True}, "BOKEH_SECRET_KEY"),
    ({"no_such_option": 1}, "Unknown bokeh-flask setting"),
])
def test_invalid_settings_name_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ServerSettings.resolve(overrides, {})


def test_default_websocket_allowlist_is_localhost_on_the_port():
    assert ServerSettings(port=5100).websocket_origins() == {"localhost:5100"}
    assert ServerSettings(allow_websocket_origin=("example.com",)).websocket_origins() == {"example.com:80"}


@pytest.mark.parametrize("origin, allowlist, allowed", [
    ("http://localhost:5006", {"localhost:5006"}, True),
    ("http://localhost:5007", {"localhost:5006"}, False),
    ("http://example.com", {"example.com:80"}, True),
    ("https://example.com", {"example.com:80"}, True),  # bokeh assumes :80 for any scheme
    ("http://a.example.com:8080", {"*.example.com:*"}, True),
    ("http://a.b.example.com:8080", {"*.example.com:*"}, False),
    ("http://192.168.1.7:80", {"192.168.*.*"}, True),
    ("http://evil.com", {"*"}, True),
    ("null", {"localhost:5006"}, False),
])
def test_origin_matching(origin, allowlist, allowed):
    assert origin_allowed(origin, allowlist) is allowed


def test_env_allowlist_overrides(monkeypatch):
    assert env_websocket_origins() is None
    monkeypatch.setenv("BOKEH_ALLOW_WS_ORIGIN", "a.com, b.com:81")
    assert env_websocket_origins() == {"a.com:80", "b.com:81"}


def test_requested_session_rules():
    s = ServerSettings()
    sid, token = requested_session({}, {}, s)
    assert len(sid) == 44 and token is None
    assert requested_session({"bokeh-session-id": "mine"}, {}, s) == ("mine", None)
    assert requested_session({}, {"Bokeh-Session-Id": "hdr"}, s) == ("hdr", None)
    tok = generate_jwt_token("from-token")
    assert requested_session({"bokeh-token": tok}, {}, s) == ("from-token", tok)
    with pytest.raises(PermissionDenied, match="argument and header"):
        requested_session({"bokeh-session-id": "a"}, {"Bokeh-Session-Id": "b"}, s)
    with pytest.raises(PermissionDenied, match="Both token and session ID"):
        requested_session({"bokeh-session-id": "a", "bokeh-token": tok}, {}, s)
    external = ServerSettings(sign_sessions=True, secret_key=SECRET.encode(), generate_session_ids=False)
    with pytest.raises(PermissionDenied, match="No bokeh-session-id"):
        requested_session({}, {}, external)


def test_token_carries_the_request_and_is_checked():
    s = ServerSettings(exclude_cookies=("secret",))
    request = RequestInfo(arguments={"N": [b"5"]}, headers={"X-Test": "1", "Cookie": "a=1; secret=2"},
                          cookies={"a": "1", "secret": "2"})
    token = token_for("sid", request, s)
    payload = get_token_payload(token)
    assert payload["arguments"] == {"N": [b"5"]}
    assert payload["cookies"] == {"a": "1"}
    assert "Cookie" not in payload["headers"] and payload["headers"]["X-Test"] == "1"
    assert check_token(token, s) == "sid"


def test_expired_and_forged_tokens_are_refused():
    s = ServerSettings()
    expired = generate_jwt_token(generate_session_id(), expiration=-10)
    with pytest.raises(PermissionDenied, match="Token is expired"):
        check_token(expired, s)
    with pytest.raises(PermissionDenied, match="could not be decoded"):
        check_token("garbage!!", s)
    signed = ServerSettings(sign_sessions=True, secret_key=SECRET.encode())
    with pytest.raises(PermissionDenied, match="signature"):
        check_token(generate_jwt_token("unsigned-id"), signed)


@pytest.mark.parametrize("key, warned", [
    (generate_secret_key(), False),
    (secrets.token_hex(32), False),
    (secrets.token_hex(16), False),  # 32 characters
    ("k" * 44, False),
    ("Tr0ub4dor&3", True),
])
def test_every_key_bokeh_accepts_is_accepted_with_its_warning(key, warned, caplog):
    """bokeh only warns under 32 bytes; so does this server (no guess at entropy that refuses random keys)."""
    from bokeh_flask.core import settings as settings_module

    settings_module._WARNED.clear()
    ServerSettings(sign_sessions=True, secret_key=key.encode())
    assert ("at least 32 bytes" in caplog.text) is warned


def test_random_hex_keys_are_always_accepted():
    for _ in range(500):  # token_hex(32) was refused one time in four by the old entropy estimate
        ServerSettings(sign_sessions=True, secret_key=secrets.token_hex(32).encode())


def test_huge_headers_are_shed_to_keep_the_token_small(caplog):
    from bokeh_flask.core.tokens import MAX_TOKEN_BYTES

    noise = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(6000))  # does not compress away
    request = RequestInfo(arguments={"N": [b"1"]}, headers={"X-Huge": noise, "X-Small": "ok"},
                          cookies={"big": noise[::-1], "small": "1"})
    token = token_for("sid", request, ServerSettings())
    payload = get_token_payload(token)
    assert len(token) <= MAX_TOKEN_BYTES
    assert payload["headers"] == {"X-Small": "ok"} and payload["cookies"] == {"small": "1"}
    assert payload["arguments"] == {"N": [b"1"]}
    assert "header X-Huge" in caplog.text and "cookie big" in caplog.text


ALLOWLIST_CASES = [
    # (host the Origin names, --allow-websocket-origin patterns)
    ("dashboard.corp", ["dashboard.corp"]),
    ("dashboard.corp.attacker.com", ["dashboard.corp"]),
    ("attacker.com", ["dashboard.corp"]),
    ("dashboard.corp:8080", ["dashboard.corp"]),
    ("dashboard.corp:8080", ["dashboard.corp:8080"]),
    ("dashboard.corp:8080", ["dashboard.corp:*"]),
    ("a.example.com", ["*.example.com"]),
    ("a.b.example.com", ["*.example.com"]),
    ("example.com", ["*.example.com"]),
    ("192.168.1.7:5006", ["192.168.*.*:5006"]),
    ("192.168.1.7:5007", ["192.168.*.*:5006"]),
    ("10.0.0.1", ["192.168.*.*"]),
    ("localhost:5006", ["localhost:5006", "other.org"]),
    ("localhost", ["localhost:5006"]),
    ("other.org", ["localhost:5006", "other.org"]),
    ("anything.at.all:1234", ["*"]),
]


@pytest.mark.parametrize("host, patterns", ALLOWLIST_CASES)
def test_origin_matching_agrees_with_bokeh(host, patterns):
    """Our allowlist matching gives bokeh's answer (bokeh >= 3.8.2, which fixed suffix matches)."""
    import bokeh
    from bokeh.server.util import check_allowlist

    if tuple(int(p) for p in bokeh.__version__.split(".")[:3] if p.isdigit()) < (3, 8, 2):
        pytest.skip("bokeh < 3.8.2 matched dashboard.corp against dashboard.corp.attacker.com")
    # bokeh's create_hosts_allowlist adds the default port as here (it refuses "host:*",
    # which its matcher supports and this server accepts)
    theirs = check_allowlist(host, [p if ":" in p or p == "*" else f"{p}:80" for p in patterns])
    ours = origin_allowed(f"https://{host}", ServerSettings(allow_websocket_origin=tuple(patterns)).websocket_origins())
    assert ours is theirs
