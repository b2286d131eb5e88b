"""Run the sandbox in a background thread, for tests: `with SandboxServer() as sb: sb.base_url`."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from sandbox.app import create_app

_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 5.0


class SandboxServer:
    """A sandbox on a free local port, served by uvicorn in a daemon thread.

    trace=True records when each streamed delta is emitted (see sandbox.trace); a Message
    Batch takes batch_seconds to process (see sandbox.batches).
    """

    def __init__(
        self,
        *,
        tokens_per_second: float = 2000.0,
        ttft_ms: int = 0,
        max_context: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        trace: bool = False,
        batch_seconds: float = 0.5,
    ) -> None:
        self.app = create_app(
            tokens_per_second=tokens_per_second,
            ttft_ms=ttft_ms,
            max_context=max_context,
            trace=trace,
            batch_seconds=batch_seconds,
        )
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            # A hung request whose client never leaves must not hold up the test run's exit.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The server's root URL (Anthropic SDK base_url; append /v1 for the OpenAI SDK)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving and wait until the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_SECONDS)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
