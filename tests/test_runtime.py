"""The shared exporter runtime, exercised through a toy exporter run as a real process on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import gzip
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpers import (ROOT, Process, assert_one_line_error, free_port, promtool_check_metrics, run_cli, samples,
                     scrape, value)

TOY = str(Path(__file__).parent / "fixtures" / "toy_exporter.py")


def run_toy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOY, *args], capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def start_toy(*args: str, scheme: str = "http", env: dict | None = None, **wait) -> tuple[Process, str]:
    port = free_port()
    proc = Process([sys.executable, TOY, "--listen", f"127.0.0.1:{port}", *args], env=env, cwd=ROOT)
    base = f"{scheme}://127.0.0.1:{port}"
    proc.wait_http(base + "/-/healthy", **wait)
    return proc, base


@pytest.fixture
def toy():
    proc, base = start_toy()
    yield base
    proc.stop()


def test_version_is_printed():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == "mlscope 0.1.0"


def test_unknown_command_is_one_line_error():
    out = run_cli("frobnicate")
    assert_one_line_error(out, "unknown command 'frobnicate'")


@pytest.mark.parametrize("args,env,needles", [
    (["--listen", "127.0.0.1:70000"], {}, ["--listen", "between 0 and 65535"]),
    (["--listen", "nonsense"], {}, ["--listen", "HOST:PORT"]),
    (["--series", "many"], {}, ["--series", "integer"]),
    ([], {"MLSCOPE_SERIES": "-3"}, ["MLSCOPE_SERIES", "positive"]),
    (["--log-level", "loud"], {}, ["--log-level", "one of"]),
    (["--no-such-flag"], {}, ["unrecognized arguments"]),
    (["--config", "/nonexistent/mlscope.yml"], {}, ["--config", "cannot read", "No such file"]),
    (["--web-config", "/nonexistent/web.yml"], {}, ["--web-config", "cannot read"]),
])
def test_bad_flags_and_env_exit_2_with_one_line(args, env, needles):
    assert_one_line_error(run_toy(*args, env=env), *needles)


@pytest.mark.parametrize("content,needles", [
    ("serie: 3\n", ["unknown setting 'serie'"]),
    ("series: [1, 2]\n", ["series in", "integer"]),
    ("series: 3\n  bad: indentation\n", ["not valid YAML", "line"]),
    ("- a list\n", ["YAML mapping"]),
])
def test_bad_config_file_exits_2_naming_the_setting(tmp_path, content, needles):
    path = tmp_path / "mlscope.yml"
    path.write_text(content)
    assert_one_line_error(run_toy("--config", str(path)), *needles)


@pytest.mark.parametrize("content,needles", [
    ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n", ["--web-config", "cert_file"]),
    ("tls_server_config:\n  key_file: /nope.key\n", ["tls_server_config.cert_file is required"]),
    ("basic_auth_users:\n  alice: hunter2\n", ["basic_auth_users.alice must be a bcrypt hash"]),
    ("tls_config: {}\n", ["unknown key 'tls_config'"]),
])
def test_malformed_web_config_exits_2(tmp_path, content, needles):
    path = tmp_path / "web.yml"
    path.write_text(content)
    assert_one_line_error(run_toy("--web-config", str(path)), *needles)


def test_address_in_use_exits_2():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_toy("--listen", f"127.0.0.1:{port}")
    assert_one_line_error(result, "--listen", f"127.0.0.1:{port}", "in use")


def test_precedence_flag_over_env_over_file(tmp_path):
    cfg = tmp_path / "mlscope.yml"
    cfg.write_text("series: 2\n")

    def series(*args, env=None) -> int:
        proc, base = start_toy("--config", str(cfg), *args, env=env)
        try:
            return len(samples(scrape(base))["toy_size_bytes"])
        finally:
            proc.stop()

    assert series() == 2
    assert series(env={"MLSCOPE_SERIES": "5"}) == 5
    assert series("--series", "7", env={"MLSCOPE_SERIES": "5"}) == 7


def test_endpoints_and_formats(toy):
    text = requests.get(toy + "/metrics", timeout=5)
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'toy_size_bytes{toy="2"} 2048.0' in text.text
    assert value(text.text, "mlscope_build_info", version="0.1.0") == 1

    om = requests.get(toy + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5)
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")

    raw = requests.get(toy + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert b"toy_size_bytes" in gzip.decompress(raw.raw.read())

    assert requests.get(toy + "/-/healthy", timeout=5).text == "Healthy\n"
    landing = requests.get(toy + "/", timeout=5)
    assert landing.status_code == 200 and 'href="metrics"' in landing.text
    assert requests.get(toy + "/nope", timeout=5).status_code == 404


@pytest.mark.integration
def test_output_passes_promtool_also_with_a_failing_collector():
    proc, base = start_toy("--fail-collector")
    try:
        scrape(base)
        result = promtool_check_metrics(scrape(base))
    finally:
        proc.stop()
    assert result.returncode == 0, result.stdout + result.stderr


def test_fifty_parallel_scrapes_all_succeed_consistently(toy):
    def one(_):
        resp = requests.get(toy + "/metrics", timeout=20)
        return resp.status_code, sorted(k for k in samples(resp.text) if k != "toy_scrapes_total")

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    assert {code for code, _ in results} == {200}
    assert len({tuple(names) for _, names in results}) == 1
    # every scrape ran the collector exactly once
    assert value(scrape(toy), "toy_scrapes_total") == 51


def test_failing_collector_is_reported_and_others_keep_working():
    proc, base = start_toy("--fail-collector")
    try:
        scrape(base)
        text = scrape(base)
        assert value(text, "mlscope_collector_up", collector="broken") == 0
        assert value(text, "mlscope_collector_errors_total", collector="broken") == 2
        assert value(text, "mlscope_collector_up", collector="toy") == 1
        assert value(text, "mlscope_collector_errors_total", collector="toy") == 0
        assert value(text, "mlscope_collector_last_success_timestamp_seconds", collector="toy") > 1.7e9
        assert len(samples(text)["toy_size_bytes"]) == 3
    finally:
        out = proc.stop()
    assert "collector broken failed: RuntimeError: toy failure" in out
    assert "Traceback" not in out


def test_sigterm_exits_cleanly():
    proc, _ = start_toy()
    proc.proc.terminate()
    assert proc.proc.wait(10) == 0
    assert "shutting down" in proc.output()


# ---- TLS and basic auth (exporter-toolkit web config) ----

def _cert(tmp: Path, name: str, issuer=None, issuer_key=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key, cert_path, key_path


@pytest.fixture
def pki(tmp_path):
    ca, ca_key, ca_crt, _ = _cert(tmp_path, "ca", ca=True)
    _, _, server_crt, server_key = _cert(tmp_path, "server", ca.subject, ca_key)
    _, _, client_crt, client_key = _cert(tmp_path, "client", ca.subject, ca_key)
    return {"ca": ca_crt, "server": (server_crt, server_key), "client": (client_crt, client_key), "dir": tmp_path}


def test_tls_with_basic_auth(pki):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = pki["dir"] / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['server'][0]}\n  key_file: {pki['server'][1]}\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    proc, base = start_toy("--web-config", str(web), scheme="https", verify=str(pki["ca"]),
                           auth=("prometheus", "s3cret"))
    try:
        ok = requests.get(base + "/metrics", verify=str(pki["ca"]), auth=("prometheus", "s3cret"), timeout=5)
        assert ok.status_code == 200 and "toy_size_bytes" in ok.text
        wrong = requests.get(base + "/metrics", verify=str(pki["ca"]), auth=("prometheus", "nope"), timeout=5)
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(base + "/metrics", verify=str(pki["ca"]), timeout=5).status_code == 401
        assert requests.get(base + "/metrics", verify=str(pki["ca"]), auth=("eve", "s3cret"),
                            timeout=5).status_code == 401
        # plain HTTP to the TLS listener: a clear 400, and the server keeps serving
        plain = requests.get(base.replace("https", "http") + "/metrics", timeout=5)
        assert plain.status_code == 400 and "HTTPS server" in plain.text
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(base + "/metrics", timeout=5)  # untrusted self-signed chain
        assert requests.get(base + "/-/healthy", verify=str(pki["ca"]), auth=("prometheus", "s3cret"),
                            timeout=5).status_code == 200
    finally:
        proc.stop()


def test_tls_client_certificates_required(pki):
    web = pki["dir"] / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['server'][0]}\n  key_file: {pki['server'][1]}\n"
                   f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca']}\n")
    proc, base = start_toy("--web-config", str(web), scheme="https", verify=str(pki["ca"]), cert=pki["client"])
    try:
        ok = requests.get(base + "/metrics", verify=str(pki["ca"]), cert=pki["client"], timeout=5)
        assert ok.status_code == 200
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(base + "/metrics", verify=str(pki["ca"]), timeout=5)
    finally:
        proc.stop()


# ---- encoded-output cache for collectors that serve a cache (e.g. SageMaker) ----

class _Cached:
    def __init__(self):
        self.version, self.calls = 1, 0

    def cache_key(self):
        return self.version

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        self.calls += 1
        family = GaugeMetricFamily("cached_version", "Version of the cache.")
        family.add_metric([], self.version)
        yield family


def test_exposition_reuses_cached_collector_output_until_its_key_changes():
    from mlscope.health import Health
    from mlscope.web import Exposition

    cached, health = _Cached(), Health()
    health.register("toy")
    exposition = Exposition([cached, health])
    plain, ctype = exposition.render("", compress=False)
    zipped, _ = exposition.render("", compress=True)
    assert gzip.decompress(zipped) == plain  # concatenated gzip members form one valid body
    assert ctype.startswith("text/plain") and b"cached_version 1.0" in plain and b"mlscope_collector_up" in plain
    exposition.render("", compress=True)
    assert cached.calls == 1  # the gzip variant was built on first use
    cached.version = 2
    assert b"cached_version 2.0" in gzip.decompress(exposition.render("", compress=True)[0])
    assert cached.calls == 2
    om, om_type = exposition.render("application/openmetrics-text; version=1.0.0", compress=False)
    assert om_type.startswith("application/openmetrics-text")
    assert om.count(b"# EOF") == 1 and om.endswith(b"# EOF\n")


@pytest.mark.integration
def test_cached_exposition_passes_promtool():
    from mlscope.health import Health
    from mlscope.web import Exposition

    health = Health()
    health.register("toy")
    exposition = Exposition([_Cached(), health])
    exposition.render("", compress=False)
    plain, _ = exposition.render("", compress=False)  # the second one comes from the cache
    result = promtool_check_metrics(plain.decode())
    assert result.returncode == 0, result.stdout + result.stderr
