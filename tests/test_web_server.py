"""The exporter's HTTP server against hostile and careless clients, as a real process on 127.0.0.1."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from helpers import samples
from test_runtime import pki, start_toy  # noqa: F401 (pki is a fixture)

REQUEST = b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def proc_status(pid: int) -> dict[str, int]:
    """Threads, open fds and resident memory (KiB) of a process, as the kernel counts them."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    fds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            fds.append(os.readlink(fd))
        except OSError:
            pass  # closed meanwhile
    return {"threads": int(fields["Threads"]), "rss_kib": int(fields["VmRSS"].split()[0]), "fds": len(fds),
            "sockets": sum(target.startswith("socket:") for target in fds)}


@pytest.fixture(autouse=True)
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.fail(f"these tests open 1,200 sockets; the fd hard limit here is {hard}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_reply(sock: socket.socket) -> bytes:
    """One reply with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return data


def closed_by_server_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def settle(pid: int, key: str, target: int, timeout: float = 20) -> dict[str, int]:
    """Wait until the exporter's `key` drops to at most `target` (connections close asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        status = proc_status(pid)
        if status[key] <= target or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_head_and_a_server_header_without_versions():
    proc, base = start_toy()
    try:
        plain = {"Accept-Encoding": "identity"}
        get = requests.get(base + "/metrics", headers=plain, timeout=5)
        head = requests.head(base + "/metrics", headers=plain, timeout=5)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        # two scrapes differ a little (counters, durations); the landing page does not
        assert abs(int(head.headers["Content-Length"]) - len(get.content)) <= len(get.content) * 0.05
        landing = requests.head(base + "/", timeout=5)
        assert landing.content == b"" and int(landing.headers["Content-Length"]) == len(
            requests.get(base + "/", timeout=5).content)
        assert get.headers["Server"] == "MLScope"
        assert requests.head(base + "/nope", timeout=5).status_code == 404
        assert requests.post(base + "/metrics", data=b"x", timeout=5).status_code == 501
    finally:
        proc.stop()


def test_a_trickled_request_and_an_idle_keepalive_are_closed_at_their_deadlines():
    proc, base = start_toy("--web-read-timeout", "1", "--web-idle-timeout", "2")
    port = int(base.rsplit(":", 1)[1])
    try:
        slow = connect(port)
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        for _ in range(4):  # slowloris: a header line every 0.3 s, never the end of the request
            time.sleep(0.3)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        assert closed_by_server_within(slow, 10), "a request trickled for 10 s was still being waited on"
        assert time.monotonic() - started >= 0.9  # not before its read timeout

        idle = connect(port)
        idle.sendall(REQUEST)
        assert b"200 OK" in read_reply(idle)
        idle_since = time.monotonic()
        assert closed_by_server_within(idle, 10), "an idle keep-alive connection was never closed"
        assert time.monotonic() - idle_since >= 1.9  # the idle timeout, not the read timeout
        assert requests.get(base + "/metrics", timeout=5).status_code == 200
    finally:
        for sock in (slow, idle):
            sock.close()
        proc.stop()


def test_thousand_idle_connections_and_slowloris_do_not_starve_a_scrape():
    proc, base = start_toy("--web-max-connections", "2000", "--web-read-timeout", "60")
    port, pid = int(base.rsplit(":", 1)[1]), proc.proc.pid
    clients: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(5):
            requests.get(base + "/metrics", timeout=5)
        baseline = proc_status(pid)

        for _ in range(1000):  # idle keep-alive: one request each, then silence
            sock = connect(port)
            sock.sendall(REQUEST)
            read_reply(sock)
            clients.append(sock)
        slowloris = [connect(port) for _ in range(200)]
        clients += slowloris
        for sock in slowloris:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")

        def trickle():
            while not stop.wait(0.5):
                for sock in slowloris:
                    sock.sendall(b"X-Slow: 1\r\n")

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(1)  # let the trickle run

        loaded = settle(pid, "fds", 0, timeout=0)
        for _ in range(3):
            resp = requests.get(base + "/metrics", timeout=1)  # a functional bound, not a benchmark
            assert resp.status_code == 200 and len(samples(resp.text)["toy_size_bytes"]) == 3
        during = proc_status(pid)
        assert during["sockets"] >= baseline["sockets"] + 1200, (baseline, during)  # every client is really held
        assert during["threads"] <= baseline["threads"] + 4, (baseline, loaded, during)  # no thread per client
    finally:
        stop.set()
        for sock in clients:
            sock.close()
    try:
        after = settle(pid, "fds", baseline["fds"] + 2)
        assert after["fds"] <= baseline["fds"] + 2, (baseline, after)
        assert after["threads"] <= baseline["threads"] + 4, (baseline, after)
        # memory goes back: what 1,200 connections cost is freed (allow 8 MiB of allocator slack)
        assert after["rss_kib"] <= baseline["rss_kib"] + 8 * 1024, (baseline, during, after)
        assert requests.get(base + "/metrics", timeout=1).status_code == 200
        print(f"exporter before: {baseline}; with 1,200 clients: {during}; after: {after}")
    finally:
        proc.stop()


def test_at_the_connection_cap_the_longest_waiting_connection_makes_room():
    proc, base = start_toy("--web-max-connections", "50")
    port, pid = int(base.rsplit(":", 1)[1]), proc.proc.pid
    clients = []
    try:
        baseline = proc_status(pid)
        clients = [connect(port) for _ in range(300)]
        time.sleep(0.5)
        for _ in range(3):
            assert requests.get(base + "/metrics", timeout=1).status_code == 200
        during = proc_status(pid)
        assert during["fds"] <= baseline["fds"] + 51, (baseline, during)
        # the oldest were closed to make room; the newest are still open
        assert closed_by_server_within(clients[0], 2)
        assert not closed_by_server_within(clients[-1], 0.2)
    finally:
        for sock in clients:
            sock.close()
        proc.stop()


def test_a_stalled_tls_handshake_is_closed_at_the_read_timeout_and_tls_scrapes_go_on(pki):
    web = pki["dir"] / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['server'][0]}\n  key_file: {pki['server'][1]}\n")
    proc, base = start_toy("--web-config", str(web), "--web-read-timeout", "1", scheme="https", verify=str(pki["ca"]))
    port = int(base.rsplit(":", 1)[1])
    stalled = [connect(port) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, and then nothing
        assert requests.get(base + "/metrics", verify=str(pki["ca"]), timeout=1).status_code == 200
        assert all(closed_by_server_within(sock, 10) for sock in stalled), "a stalled handshake was waited on"
    finally:
        for sock in stalled:
            sock.close()
        proc.stop()
