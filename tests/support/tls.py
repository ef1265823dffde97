"""A self-signed certificate for TLS tests (made with the openssl command)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

KEY_PASSWORD = "tls-test"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` for CN=localhost, the key encrypted with :data:`KEY_PASSWORD`."""
    if shutil.which("openssl") is None:
        pytest.skip("the TLS tests make a self-signed certificate with the openssl command")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-passout", f"pass:{KEY_PASSWORD}"],
                   check=True, capture_output=True)
    return cert, key
