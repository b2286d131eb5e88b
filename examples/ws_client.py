"""A minimal client of the JSON websocket API (docs/api.md): ask, stream the answer, repeat.

    pip install websockets
    export CHAT_API_KEY=sk-chat-...
    python examples/ws_client.py --url ws://localhost:8000/ws/v1/chat/ "Hello"

With no message it reads them from the terminal, one per line, in one conversation. Ctrl-C
stops the answer under way (it is charged only for what was used) and quits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def ask(ws, frame: dict) -> str | None:
    """Send one message, print the answer as it streams; the conversation id, or None."""
    await ws.send(json.dumps(frame))
    conversation_id = None
    try:
        async for raw in ws:
            event = json.loads(raw)
            kind = event["type"]
            if kind == "started":
                conversation_id = event["conversation_id"]
            elif kind == "delta":
                print(event["text"], end="", flush=True)
            elif kind == "notice":
                print(f"\n[{event['level']}] {event['text']}", file=sys.stderr)
            elif kind == "retrying":
                print(f"\n[retrying in {event['delay']:.1f}s: {event['message']}]", file=sys.stderr)
            elif kind == "finished":
                usage, budget = event["usage"], event["budget"]
                print(
                    f"\n[{usage['total_tokens']} tokens, ${event['cost_usd']:.6f}; today "
                    f"{budget['tokens_used']}/{budget['tokens_limit']} tokens]",
                    file=sys.stderr,
                )
                return conversation_id
            elif kind == "stopped":
                print("\n[stopped]", file=sys.stderr)
                return conversation_id
            elif kind == "error":
                print(f"\n[error {event['code']}] {event['message']}", file=sys.stderr)
                return conversation_id or frame.get("conversation_id")
    except asyncio.CancelledError:
        await ws.send(json.dumps({"type": "stop"}))
        raise
    return conversation_id


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", help="one message to send (else read lines)")
    parser.add_argument("--url", default="ws://localhost:8000/ws/v1/chat/")
    parser.add_argument("--model", help="a model id, e.g. gpt-5-mini or claude-sonnet-4-6")
    parser.add_argument("--system", help="a system prompt for the conversation")
    parser.add_argument("--max-tokens", type=int)
    args = parser.parse_args()
    key = os.environ.get("CHAT_API_KEY")
    if not key:
        print("Set CHAT_API_KEY (create a key at /settings/keys/).", file=sys.stderr)
        return 2
    options = {
        name: value
        for name, value in (
            ("model", args.model),
            ("system", args.system),
            ("max_tokens", args.max_tokens),
        )
        if value is not None
    }
    try:
        async with connect(args.url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            if args.message:
                await ask(ws, {"type": "send", "message": args.message, **options})
                return 0
            conversation_id = None
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                if not line.strip():
                    continue
                frame = {"type": "send", "message": line, **options}
                if conversation_id:
                    frame["conversation_id"] = conversation_id
                    frame.pop("system", None)
                conversation_id = await ask(ws, frame)
    except ConnectionClosed as closed:
        if closed.rcvd and closed.rcvd.code == 4401:
            print("The server refused the API key (4401).", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
