"""`mlscope healthcheck`, the compose healthcheck of every MLScope service: it must keep passing when the
operator turns on basic auth or TLS, and fail with one line when nothing healthy answers."""

from __future__ import annotations

import bcrypt
import pytest

from helpers import free_port, run_cli
from test_runtime import _cert, start_toy


@pytest.fixture
def server_cert(tmp_path):
    ca, ca_key, ca_crt, _ = _cert(tmp_path, "ca", ca=True)
    _, _, crt, key = _cert(tmp_path, "server", ca.subject, ca_key)
    return crt, key, ca_crt


def healthcheck(url: str):
    return run_cli("healthcheck", url)


def test_plain_exporter_is_healthy():
    proc, base = start_toy()
    try:
        result = healthcheck(base + "/-/healthy")
        assert (result.returncode, result.stderr) == (0, "")
    finally:
        proc.stop()


@pytest.mark.parametrize("tls", [False, True], ids=["basic-auth", "tls-and-basic-auth"])
def test_healthy_with_basic_auth_and_tls_on(tmp_path, server_cert, tls):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    tls_config = f"tls_server_config:\n  cert_file: {server_cert[0]}\n  key_file: {server_cert[1]}\n" if tls else ""
    web.write_text(f"{tls_config}basic_auth_users:\n  prometheus: '{hashed}'\n")
    proc, base = start_toy("--web-config", str(web), scheme="https" if tls else "http", verify=str(server_cert[2]),
                           auth=("prometheus", "s3cret"))
    try:
        # the compose file names the plain URL; the operator only added --web-config
        result = healthcheck(base.replace("https:", "http:") + "/-/healthy")
        assert (result.returncode, result.stderr) == (0, "")
    finally:
        proc.stop()


def test_nothing_listening_is_one_line_and_status_1():
    url = f"http://127.0.0.1:{free_port()}/-/healthy"
    result = healthcheck(url)
    assert (result.returncode, result.stderr) == (1, f"mlscope healthcheck: unhealthy: {url}: "
                                                     "[Errno 111] Connection refused\n")


def test_an_error_status_is_unhealthy():
    proc, base = start_toy()
    try:
        result = healthcheck(base + "/no-such-page")
        assert (result.returncode, result.stderr) == (1, f"mlscope healthcheck: unhealthy: {base}/no-such-page: "
                                                         "HTTP 404\n")
    finally:
        proc.stop()
