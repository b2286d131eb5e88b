"""`python -m sandbox`: serve the provider emulator."""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from sandbox.app import create_app


class _AnnouncingServer(uvicorn.Server):
    """Prints the listening line once the server accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            print(f"sandbox listening on http://{host}:{port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--tokens-per-second", type=float, default=40.0)
    parser.add_argument("--ttft-ms", type=int, default=300)
    parser.add_argument(
        "--max-context", type=int, default=None, help="cap every model's context window"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="record when each streamed delta is emitted; read it at GET /sandbox/trace",
    )
    parser.add_argument(
        "--batch-seconds", type=float, default=10.0, help="how long a Message Batch processes"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    app = create_app(
        tokens_per_second=args.tokens_per_second,
        ttft_ms=args.ttft_ms,
        max_context=args.max_context,
        trace=args.trace,
        batch_seconds=args.batch_seconds,
    )
    # Bind first so --port 0 works and the announced port is the real one.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server = _AnnouncingServer(
        uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=2)
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
