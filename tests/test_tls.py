"""HTTPS for the API and web chat: ``appliance serve`` with a certificate from a
local CA (made with the same openssl commands as the tls role), plain HTTP
answering only with a redirect, and settings that refuse half a TLS setup."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from appliance.settings import SettingsError, load_settings
from tests.support.process import start_server
from tests.support.services import free_port

pytestmark = pytest.mark.timeout(300)


def local_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca.crt, server.crt, server.key)."""
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "30", "-subj", "/CN=Test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=appliance",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "extendedKeyUsage=serverAuth"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
         "-copy_extensions", "copyall", "-days", "30", "-out", crt],
    ]  # fmt: skip
    for argv in commands:
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)
    return ca_crt, crt, key


@pytest.fixture
def https_server(databases, chroma_url, tmp_path):
    ca, cert, key = local_ca(tmp_path)
    port, redirect_port = free_port(), free_port()
    env = {
        "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
        "APPLIANCE_DATABASE_URL": databases.create(),
        "APPLIANCE_CHROMA_URL": chroma_url,
        "APPLIANCE_LLM_PROVIDER": "ollama",  # nothing here asks the model
        "APPLIANCE_OLLAMA_URL": "http://127.0.0.1:9",
        "APPLIANCE_OLLAMA_MODEL": "none",
        "APPLIANCE_TLS_CERT_FILE": str(cert),
        "APPLIANCE_TLS_KEY_FILE": str(key),
        "APPLIANCE_HTTP_REDIRECT_PORT": str(redirect_port),
    }
    server = start_server(env, port, tmp_path / "server.log", ca_file=ca)
    try:
        yield server, ca, port, redirect_port, (tmp_path / "data" / "admin-key").read_text().strip()
    finally:
        server.stop()


def test_the_api_is_served_over_https_and_plain_http_only_redirects(https_server):
    server, ca, port, redirect_port, key = https_server
    trusted = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(base_url=server.url, verify=trusted, headers={"x-api-key": key}, trust_env=False) as api:
        assert api.get("/knowledge-bases").status_code == 200
    # A client that does not trust the CA is refused the connection.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/healthz", trust_env=False)

    # Plain HTTP: a redirect to the same path and query over HTTPS, and nothing else.
    plain = f"http://127.0.0.1:{redirect_port}"
    for method in ("GET", "POST", "DELETE"):
        answer = httpx.request(method, f"{plain}/threads/search?limit=3", headers={"x-api-key": key}, trust_env=False)
        assert answer.status_code == 308, (method, answer.text)
        assert answer.headers["location"] == f"https://127.0.0.1:{port}/threads/search?limit=3"
    followed = httpx.get(f"{plain}/healthz", follow_redirects=True, verify=trusted, trust_env=False)
    assert followed.status_code == 200 and str(followed.url) == f"{server.url}/healthz"

    # The HTTPS port speaks TLS only: a plain request gets no HTTP answer.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        said = raw.recv(1024)
    assert not said.startswith(b"HTTP/")


def test_half_a_tls_setup_is_refused_naming_what_is_missing():
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file go together"):
        load_settings(env={"APPLIANCE_TLS_CERT_FILE": "/etc/appliance/tls/server.crt"})
    with pytest.raises(SettingsError, match="http_redirect_port redirects to HTTPS"):
        load_settings(env={"APPLIANCE_HTTP_REDIRECT_PORT": "80"})


def test_the_terminal_commands_trust_the_ca_they_are_given(https_server, tmp_path):
    server, ca, _, _, key = https_server
    notes = tmp_path / "lift.md"
    notes.write_text("# Lift\n\nThe lift is serviced every Monday morning.\n")
    appliance = str(Path(sys.executable).with_name("appliance"))
    command = [appliance, "ingest", str(notes), "-k", "building", "--url", server.url, "--key", key, "-q"]
    trusted = subprocess.run([*command, "--ca-file", str(ca)], capture_output=True, text=True, timeout=120)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    untrusted = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert "--ca-file" in untrusted.stderr and "Traceback" not in untrusted.stderr
