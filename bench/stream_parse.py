"""CPU per streamed chunk: our lean adapters beside the SDKs' own parsed streams.

    .venv/bin/python bench/stream_parse.py [--runs 2] [--streams 20] [--tokens 400]

One in-process sandbox (SandboxServer, unpaced: 10^6 tokens/s, no time to first token) serves
every stream; each asks for exactly `--tokens` tokens (`sandbox-reply:N`), so every path parses the
same SSE stream. Four paths: our Anthropic and OpenAI adapters (`with_streaming_response` lines,
orjson, our events, with the first-token and idle timeouts around each line) and the SDKs' parsed
streams (`client.messages.create(stream=True)` and `client.chat.completions.create(stream=True)`,
iterating typed events). CPU is time.process_time (the whole process) and time.thread_time (the
client's thread alone): the sandbox runs in a thread of this process and shares its CPU, so
process time includes the load generator; thread time is the client's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from _django import setup

RESULT = "{:<34} {:>7} {:>10} {:>14} {:>14}"


async def ours(provider, request, n: int) -> int:
    from chat.providers.base import TextDelta

    chunks = 0
    for _ in range(n):
        async for event in provider.stream(request):
            chunks += isinstance(event, TextDelta)
    return chunks


async def sdk_anthropic(request, n: int) -> int:
    from chat.providers.anthropic import build_body
    from chat.providers.clients import anthropic_client

    client, chunks = anthropic_client(), 0
    for _ in range(n):
        stream = await client.messages.create(**build_body(request), stream=True)
        async for event in stream:
            chunks += event.type == "content_block_delta"
    return chunks


async def sdk_openai(request, n: int) -> int:
    from chat.providers.clients import openai_client
    from chat.providers.openai import build_body

    client, chunks = openai_client(), 0
    for _ in range(n):
        stream = await client.chat.completions.create(**build_body(request), stream=True)
        async for chunk in stream:
            chunks += bool(chunk.choices and chunk.choices[0].delta.content)
    return chunks


async def measure(name: str, run, runs: int) -> None:
    await run(1)  # warm-up: connections, imports
    for i in range(runs):
        wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
        chunks = await run(None)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        own = time.thread_time() - own
        print(
            RESULT.format(
                name if i == 0 else "",
                i + 1,
                f"{chunks:,}",
                f"{cpu / chunks * 1e6:.1f}",
                f"{own / chunks * 1e6:.1f}",
            )
            + f"   ({wall:.2f} s wall)"
        )


async def bench(args: argparse.Namespace) -> None:
    from django.conf import settings

    from chat.providers.anthropic import AnthropicProvider
    from chat.providers.base import ChatMessage, ChatRequest
    from chat.providers.openai import OpenAIProvider

    def request(model: str) -> ChatRequest:
        text = f"sandbox-reply:{args.tokens} Tell me about budgets. [{uuid.uuid4().hex}]"
        return ChatRequest(model, (ChatMessage("user", text),), max_tokens=args.tokens + 10)

    claude, gpt = request("claude-sonnet-4-6"), request("gpt-5-mini")
    streams = args.streams
    print(f"{args.streams} streams of {args.tokens} tokens per run; CPU in microseconds per chunk")
    print(RESULT.format("path", "run", "chunks", "process µs/ch", "thread µs/ch"))
    paths = {
        "ours: Anthropic adapter": lambda n: ours(AnthropicProvider(), claude, n or streams),
        "SDK: messages.create(stream=True)": lambda n: sdk_anthropic(claude, n or streams),
        "ours: OpenAI adapter": lambda n: ours(OpenAIProvider(), gpt, n or streams),
        "SDK: chat.completions.create": lambda n: sdk_openai(gpt, n or streams),
    }
    assert settings.ANTHROPIC_BASE_URL
    for name, run in paths.items():
        await measure(name, run, args.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=400)
    args = parser.parse_args()
    setup()
    from django.conf import settings

    from sandbox.server import SandboxServer

    with SandboxServer(tokens_per_second=1_000_000.0, ttft_ms=0) as server:
        settings.ANTHROPIC_API_KEY = settings.OPENAI_API_KEY = "bench"
        settings.ANTHROPIC_BASE_URL = server.base_url
        settings.OPENAI_BASE_URL = server.base_url + "/v1"
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
