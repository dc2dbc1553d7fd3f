"""HTTPS for the MCP server from http.tls_cert/tls_key: a real TLS handshake against a self-signed cert, and a
config that names half a pair or a missing file is refused."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chiffon.orchestrator.up import components
from chiffon.shared.config import load_settings
from chiffon.shared.errors import ConfigError
from tests.conftest import wait_healthy

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_serve_speaks_https_with_the_configured_certificate(cli_env: dict[str, str], tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**cli_env, "CHIFFON_HTTP__TLS_CERT": str(cert), "CHIFFON_HTTP__TLS_KEY": str(key),
           "CHIFFON_HTTP__BEARER_TOKEN": "https-test-token"}
    proc = subprocess.Popen([CHIFFON, "serve", "--transport", "http", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        reply = wait_healthy(f"https://127.0.0.1:{port}/health", proc,
                             lambda: proc.stderr.read() if proc.stderr else "", timeout_s=120,
                             verify=ssl.create_default_context(cafile=str(cert)))
        assert reply.status_code == 200 and reply.url.scheme == "https"
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


def test_half_a_tls_pair_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ConfigError, match="both tls_cert and tls_key"):
        load_settings(None, home=tmp_path, http={"tls_cert": str(cert)})
    with pytest.raises(ConfigError, match="is not a file"):
        load_settings(None, home=tmp_path, http={"tls_cert": str(cert), "tls_key": str(tmp_path / "nope.key")})


def test_up_starts_the_console_where_the_host_lists_it(tmp_path: Path) -> None:
    settings = load_settings(None, home=tmp_path, host="ai", hosts={"ai": {"chiffon": ["orchestrator", "console"]}},
                             console={"port": 7861})
    names = {c.name: c for c in components(settings)}
    assert set(names) == {"orchestrator", "console"}
    assert names["console"].health_url == "http://127.0.0.1:7861/health"
    assert names["console"].argv[1:] == ["console"]
