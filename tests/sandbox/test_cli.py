"""`python -m sandbox` starts, announces its address and serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parents[2]


def test_cli_announces_its_address_and_serves() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            "0",
            "--ttft-ms",
            "0",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        base_url = line.removeprefix("sandbox listening on ")

        assert httpx2.get(base_url + "/health").json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=10)
