"""``bokeh-flask user``: admins add, list, remove users and issue or revoke their API keys."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bokeh_flask.core.users import api_key_hash
from bokeh_flask.runtime.stores.files import FileStore
from bokeh_flask.web.accounts import api_key_matches, password_matches
from tests.support.servers import REPO_ROOT


def user_command(data, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bokeh_flask", "user", "--data-directory", str(data), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    return lines[0]


def test_add_list_key_revoke_remove(tmp_path):
    data = tmp_path / "data"
    assert user_command(data, "add", "alice", "--password-stdin", stdin="correct horse\n").stdout == "added alice\n"
    record = FileStore(data).get_user("alice")
    assert password_matches(record, "correct horse") and not password_matches(record, "wrong horse")
    assert "correct horse" not in record.password_hash
    key = user_command(data, "key", "alice").stdout.strip()
    assert len(key) >= 40 and api_key_matches(FileStore(data).get_user("alice"), key)
    assert FileStore(data).get_user("alice").api_key_hashes == (api_key_hash(key),)  # only the hash is kept
    assert user_command(data, "list").stdout == "alice\t1 API key(s)\n"
    assert user_command(data, "revoke", "alice", key).returncode == 0
    assert not api_key_matches(FileStore(data).get_user("alice"), key)
    assert user_command(data, "remove", "alice").stdout == "removed alice\n"
    assert user_command(data, "list").stdout == ""


@pytest.mark.parametrize("args, stdin, message", [
    (["add", "bob", "--password-stdin"], "short\n", "Passwords have at least 8 characters"),
    (["add", "../bob", "--password-stdin"], "long enough\n", "User names are"),
    (["remove", "nobody"], "", "No user 'nobody'"),
    (["key", "nobody"], "", "No user 'nobody'"),
    (["revoke", "nobody", "k"], "", "has no such API key"),
])
def test_mistakes_are_one_line_errors(tmp_path, args, stdin, message):
    assert message in one_line_error(user_command(tmp_path / "data", *args, stdin=stdin))


def test_a_name_is_added_once(tmp_path):
    data = tmp_path / "data"
    user_command(data, "add", "carol", "--password-stdin", stdin="long enough\n")
    assert "exists already" in one_line_error(user_command(data, "add", "carol", "--password-stdin",
                                                           stdin="other password\n"))
