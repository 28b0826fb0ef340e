"""The processes of `mlscope local`: each in its own process group and dying with its supervisor, restarted
with backoff when it exits, and the whole stack given up when one keeps failing. Also: who holds a port."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: a preexec_fn must not import or allocate much


class StackFailed(Exception):
    """A component kept exiting: the stack gives up (the message names it and its log)."""


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        # The kernel sends SIGTERM when the thread that started us dies, even by SIGKILL.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # it died before prctl took effect
            os._exit(1)
    return preexec


def launch(argv: list[str], env: dict[str, str], cwd: Path | None, log: Path) -> subprocess.Popen:
    """Start one process, its output appended to `log`, in a new session (Ctrl-C in the terminal reaches only
    the supervisor) that ends with the calling thread; call it from a thread that lives as long as the process
    should. The one launcher: `mlscope local`, the tests (tests/helpers.Process) and bench/ all start with it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True, preexec_fn=_die_with(os.getpid()))


def terminate(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def port_holder(port: int) -> str:
    """'pid N (command line)' of the process listening on TCP `port`, from /proc/net/tcp* and /proc/*/fd."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {proc.name} ({command[:100]})"
        except OSError:
            continue
    return "a process of another user" if sockets else "another socket"


def taken_port(ports: dict[str, int]) -> str | None:
    """The first of `ports` ({name: port}) that cannot be bound on 127.0.0.1, said in one sentence."""
    for name, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves bind
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return f"port {port} ({name}) is in use by {port_holder(port)}"
    return None


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Child:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    proc: subprocess.Popen | None = None
    exits: list[float] = field(default_factory=list)
    restart_at: float | None = None


class Supervisor:
    """Runs named children; `watch()` restarts the ones that exited, after 1, 2, 4... seconds (at most
    `backoff_cap`), and raises StackFailed when one exits more than `restarts` times within `window` s."""

    def __init__(self, restarts: int = 5, window: float = 300, backoff_cap: float = 30,
                 report: Callable[[str], None] = say):
        self.children: dict[str, Child] = {}
        self.restarts, self.window, self.backoff_cap, self.report = restarts, window, backoff_cap, report

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
        child = self.children[name] = Child(argv, env, cwd, log)
        child.proc = launch(argv, env, cwd, log)
        return child.proc

    def stop(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child and child.proc:
            terminate(child.proc)

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)

    def exited(self, name: str) -> int | None:
        proc = self.children[name].proc
        return None if proc is None else proc.poll()

    def watch(self) -> None:
        now = time.monotonic()
        for name, child in self.children.items():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.proc = launch(child.argv, child.env, child.cwd, child.log)
                    self.report(f"{name} restarted (pid {child.proc.pid})")
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            child.exits = [t for t in child.exits if now - t < self.window] + [now]
            status = child.proc.returncode
            if len(child.exits) > self.restarts:
                raise StackFailed(f"{name} exited {len(child.exits)} times in {self.window:.0f}s "
                                  f"(last status {status}); see {child.log}")
            delay = min(self.backoff_cap, 2.0 ** (len(child.exits) - 1))
            self.report(f"{name} exited with status {status}; restarting in {delay:.0f}s "
                        f"(restart {len(child.exits)} of {self.restarts}; log {child.log})")
            child.restart_at = now + delay
