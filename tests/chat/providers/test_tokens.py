"""Counting prompt tokens before sending, offline: exact for GPT, conservative for Claude."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from chat.providers import tokens
from chat.providers.base import ChatMessage, ChatRequest, StreamEnd
from chat.providers.specs import spec
from sandbox.server import SandboxServer
from tests.chat.providers.conftest import ADAPTERS, collect

CONVERSATIONS = [
    ((ChatMessage("user", "Hi"),), ""),
    (
        (
            ChatMessage("user", "Wie heißt die Hauptstadt von Österreich? 🇦🇹"),
            ChatMessage("assistant", "Wien.\n\n```python\nprint('ok')\n```"),
            ChatMessage("user", "And of 日本?  <|endoftext|> is plain text here."),
        ),
        "You are terse.",
    ),
    (
        (
            *tuple(
                ChatMessage("user" if i % 2 == 0 else "assistant", "word " * i)
                for i in range(1, 30, 2)
            ),
            ChatMessage("user", "last"),
        ),
        "System " * 300,
    ),
]


def test_rank_files_are_installed_offline_where_tiktoken_looks(settings):
    folder = settings.LLM_TIKTOKEN_CACHE_DIR
    tokens.encoding("o200k_base")
    tokens.encoding("cl100k_base")
    for name in ("o200k_base", "cl100k_base"):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        assert (folder / hashlib.sha1(url.encode()).hexdigest()).is_file()
    assert tokens.count_text("hello world") == 2
    assert tokens.count_text("hello world", "cl100k_base") == 2


@pytest.mark.parametrize(("messages", "system"), CONVERSATIONS)
async def test_gpt_count_matches_the_prompt_tokens_the_provider_reports(
    providers, messages, system
):
    request = ChatRequest("gpt-5-mini", messages, max_tokens=20, system=system)
    counted = await tokens.count_prompt_tokens(spec("gpt-5-mini"), request)
    end = (await collect(ADAPTERS["openai"].stream(request)))[-1]
    assert isinstance(end, StreamEnd)
    assert counted == end.usage.prompt_tokens


@pytest.mark.parametrize(("messages", "system"), CONVERSATIONS)
async def test_claude_estimate_never_undercounts(providers, messages, system):
    request = ChatRequest("claude-sonnet-4-6", messages, max_tokens=20, system=system)
    estimate = await tokens.count_prompt_tokens(spec("claude-sonnet-4-6"), request)
    end = (await collect(ADAPTERS["anthropic"].stream(request)))[-1]
    assert estimate >= end.usage.prompt_tokens
    assert estimate <= end.usage.prompt_tokens * 1.5 + 20  # conservative, not absurd


class CountRequests:
    """ASGI middleware counting requests per path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: dict[str, int] = {}
        CountRequests.last = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen[scope["path"]] = self.seen.get(scope["path"], 0) + 1
        await self.app(scope, receive, send)


@pytest.fixture
def counted_sandbox(settings):
    server = SandboxServer(tokens_per_second=4000.0)
    server.app.add_middleware(CountRequests)
    with server:
        settings.ANTHROPIC_API_KEY = "sk-ant-test"
        settings.ANTHROPIC_BASE_URL = server.base_url
        yield server


async def test_large_claude_prompts_are_counted_by_count_tokens_once(counted_sandbox, settings):
    settings.LLM_COUNT_TOKENS_THRESHOLD = 100
    model = spec("claude-sonnet-4-6")
    text = f"[{uuid.uuid4()}] " + "The quick brown fox jumps over the lazy dog. " * 40
    request = ChatRequest(model.id, (ChatMessage("user", text),), max_tokens=20, system="Be brief.")
    small = ChatRequest(model.id, (ChatMessage("user", "hi"),), max_tokens=20)
    local = tokens.local_prompt_tokens(model, request)
    assert local > 100

    counted = await tokens.count_prompt_tokens(model, request)
    await tokens.count_prompt_tokens(model, small)  # below the threshold: local estimate
    assert CountRequests.last.seen == {"/v1/messages/count_tokens": 1}
    assert counted < local  # the real count, not the padded estimate
    end = (await collect(ADAPTERS["anthropic"].stream(request)))[-1]
    assert counted == end.usage.prompt_tokens

    # The same content again: answered from the cache, no request.
    assert await tokens.count_prompt_tokens(model, request) == counted
    assert CountRequests.last.seen["/v1/messages/count_tokens"] == 1


async def test_count_tokens_failure_falls_back_to_the_estimate(settings):
    settings.LLM_COUNT_TOKENS_THRESHOLD = 10
    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = "k", "http://127.0.0.1:9"  # closed
    model = spec("claude-sonnet-4-6")
    text = f"{uuid.uuid4()} " * 50
    request = ChatRequest(model.id, (ChatMessage("user", text),), max_tokens=20)
    assert await tokens.count_prompt_tokens(model, request) == tokens.local_prompt_tokens(
        model, request
    )
