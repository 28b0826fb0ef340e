"""Basic auth as exporter-toolkit does it, and `mlscope web-config`, which writes the file for it."""

from __future__ import annotations

import base64
import stat
import statistics
import threading
import time

import bcrypt
import pytest
import requests
import yaml

import mlscope.web
from helpers import Prometheus, assert_one_line_error, run_cli, scrape_config, start_exporter
from test_runtime import start_toy

PASSWORD = b"correct horse"


def header(user: str | bytes, password: bytes) -> str:
    user = user.encode() if isinstance(user, str) else user
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.fixture
def counted_checkpw(monkeypatch):
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(mlscope.web.bcrypt, "checkpw", checkpw)
    return calls


def make_auth(*users: str) -> mlscope.web._Auth:
    hashed = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=4))
    return mlscope.web._Auth({user: hashed for user in users})


def test_every_rejected_credential_costs_one_bcrypt_check_whoever_the_user(counted_checkpw):
    auth = make_auth("alice")
    for user, password in [("alice", b"wrong"), ("mallory", b"wrong"), ("mallory", PASSWORD),
                           ("alice", b"x" * 73), ("", b"")]:
        before = len(counted_checkpw)
        assert auth.check(header(user, password)) is False, user
        assert len(counted_checkpw) == before + 1, f"{user!r} was rejected without a bcrypt check"
    # the unknown user is checked against a hash of the same cost as the real users'
    assert counted_checkpw[1][:7] == auth.users["alice"][:7] == b"$2b$04$"


def test_only_successes_are_cached_in_a_bounded_lru(counted_checkpw, monkeypatch):
    monkeypatch.setattr(mlscope.web._Auth, "CACHE_SIZE", 2)
    auth = make_auth("a", "b", "c")
    for i in range(50):
        assert auth.check(header("a", b"wrong%d" % i)) is False
    assert len(auth._cache) == 0 and len(counted_checkpw) == 50  # wrong passwords never cached

    assert auth.check(header("a", PASSWORD)) and auth.check(header("a", PASSWORD))
    assert len(counted_checkpw) == 51  # the second one came from the cache
    assert auth.check(header("b", PASSWORD)) and auth.check(header("a", PASSWORD))  # a is now most recent
    assert auth.check(header("c", PASSWORD))  # evicts b, the least recently used
    assert len(auth._cache) == 2
    before = len(counted_checkpw)
    assert auth.check(header("a", PASSWORD)) and len(counted_checkpw) == before
    assert auth.check(header("b", PASSWORD)) and len(counted_checkpw) == before + 1


def test_malformed_authorization_headers_are_rejected():
    auth = make_auth("alice")
    for bad in [None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                header("alice", PASSWORD)[:-2]]:
        assert auth.check(bad) is False, bad
    assert auth.check(header("alice", PASSWORD)) is True
    assert mlscope.web._Auth({}).check(None) is True  # no users configured: no auth


def test_real_exporter_rejects_long_passwords_and_unknown_users_as_slowly_as_known_ones(tmp_path):
    hashed = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=9)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    proc, base = start_toy("--web-config", str(web), auth=("alice", PASSWORD.decode()))
    try:
        long = requests.get(base + "/metrics", auth=("alice", "p" * 73), timeout=10)
        assert long.status_code == 401 and long.text == "Unauthorized\n"  # not an empty reply

        def median_rejection(user: str) -> float:
            times = []
            for i in range(9):
                start = time.perf_counter()
                assert requests.get(base + "/metrics", auth=(user, f"wrong{i}"), timeout=10).status_code == 401
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        # Interleaved rounds, a generous ratio: without the dummy check an unknown user is ~30x faster.
        known = statistics.median(median_rejection("alice") for _ in range(2))
        unknown = statistics.median(median_rejection("nobody") for _ in range(2))
        assert unknown > known / 3, f"unknown user rejected in {unknown * 1000:.1f} ms, known in {known * 1000:.1f} ms"
        assert requests.get(base + "/metrics", auth=("alice", PASSWORD.decode()), timeout=10).status_code == 200
    finally:
        proc.stop()


def test_only_credentials_not_yet_cached_need_a_bcrypt_check(counted_checkpw):
    auth = make_auth("alice")
    assert not auth.needs_bcrypt(None) and not auth.needs_bcrypt("Bearer x")  # a 401 costs nothing
    assert auth.needs_bcrypt(header("alice", PASSWORD)) and auth.needs_bcrypt(header("mallory", PASSWORD))
    assert auth.check(header("alice", PASSWORD))
    assert not auth.needs_bcrypt(header("alice", PASSWORD))
    assert auth.needs_bcrypt(header("alice", b"wrong"))
    assert len(counted_checkpw) == 1  # asking never runs bcrypt


def test_a_flood_of_wrong_passwords_does_not_delay_a_scrape_with_cached_credentials(tmp_path):
    hashed = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=11)).decode()  # ~0.1 s of CPU per check
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    good = ("alice", PASSWORD.decode())
    proc, base = start_toy("--web-config", str(web), auth=good)  # its readiness check caches the credentials
    stop = threading.Event()

    def flood(n: int) -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                session.get(base + "/metrics", auth=("alice", f"guess{n}-{time.monotonic()}"), timeout=60)
            except requests.RequestException:
                pass

    attackers = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(40)]
    try:
        for thread in attackers:
            thread.start()
        time.sleep(1.5)  # 40 bcrypt checks queued: seconds of work
        for _ in range(5):
            assert requests.get(base + "/metrics", auth=good, timeout=1).status_code == 200  # a functional bound
    finally:
        stop.set()
        for thread in attackers:
            thread.join(60)
        proc.stop()


# ---- mlscope web-config ----

def test_web_config_writes_a_file_the_exporter_accepts(tmp_path):
    (tmp_path / "pw").write_text("s3cret pass\n")
    out = tmp_path / "web.yml"
    result = run_cli("web-config", "--user", "scraper", "--password-file", str(tmp_path / "pw"), "--cost", "4",
                     "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    users = yaml.safe_load(out.read_text())["basic_auth_users"]
    assert bcrypt.checkpw(b"s3cret pass", users["scraper"].encode())  # the newline is not part of it
    assert users["scraper"].startswith("$2b$04$")


@pytest.mark.parametrize("args,stdin,needle", [
    (["--password-file", "/nonexistent"], "", "--password-file: cannot read /nonexistent"),
    ([], "\n", "password from stdin is empty"),
    ([], "x" * 73, "73 bytes; bcrypt takes at most 72"),
    (["--user", "a:b"], "pw", "--user"),
    (["--password", "pw"], "", "unrecognized arguments: --password"),  # never on the command line
])
def test_web_config_bad_input_is_one_line_and_exit_2(args, stdin, needle):
    assert_one_line_error(run_cli("web-config", *args, stdin=stdin), needle)


@pytest.mark.integration
def test_web_config_with_tls_serves_a_real_exporter_that_prometheus_scrapes(tmp_path):
    (tmp_path / "pw").write_text("scrape-me")
    web = tmp_path / "web.yml"
    result = run_cli("web-config", "--password-file", str(tmp_path / "pw"), "--cost", "4",
                     "--tls-dir", str(tmp_path / "tls"), "--host", "127.0.0.1", "--output", str(web))
    assert result.returncode == 0, result.stderr
    cert = tmp_path / "tls" / "mlscope.crt"
    assert stat.S_IMODE((tmp_path / "tls" / "mlscope.key").stat().st_mode) == 0o600

    proc, base = start_exporter("host-exporter", "--web-config", str(web), scheme="https", verify=str(cert),
                                auth=("prometheus", "scrape-me"))
    try:
        assert requests.get(base + "/metrics", verify=str(cert), timeout=5).status_code == 401
        ok = requests.get(base + "/metrics", verify=str(cert), auth=("prometheus", "scrape-me"), timeout=5)
        assert ok.status_code == 200 and "node_load1" in ok.text

        job = scrape_config("secure", [base.split("//")[1]], scheme="https",
                            basic_auth={"username": "prometheus", "password_file": str(tmp_path / "pw")},
                            tls_config={"ca_file": str(cert)})
        prom = Prometheus({"scrape_configs": [job]}, tmp_path)
        try:
            assert prom.wait_for('up{job="secure"} == 1')
            assert prom.wait_for('node_load1{job="secure"}')
        finally:
            prom.stop()
    finally:
        proc.stop()
