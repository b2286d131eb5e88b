"""Simulated Anthropic prompt caching: writes, reads, floors, TTLs, what input_tokens excludes."""

from __future__ import annotations

import uuid

import anthropic

from sandbox import tokens
from sandbox.cache import AnthropicPromptCache, Segment
from sandbox.server import SandboxServer
from tests.sandbox.support import ANTHROPIC_MODEL

DOCUMENT = " ".join(f"Fact number {i} is about the sandbox." for i in range(250))
EPHEMERAL = {"type": "ephemeral"}


def _system(text: str = DOCUMENT, **control: str) -> list[dict[str, object]]:
    return [{"type": "text", "text": text, "cache_control": {**EPHEMERAL, **control}}]


def _ask(client: anthropic.Anthropic, question: str, **kwargs: object) -> anthropic.types.Message:
    kwargs.setdefault("system", _system())
    return client.messages.create(
        model=kwargs.pop("model", ANTHROPIC_MODEL),  # type: ignore[arg-type]
        max_tokens=50,
        messages=[{"role": "user", "content": question}],
        **kwargs,  # type: ignore[arg-type]
    )


def test_first_call_writes_the_prefix_and_the_second_reads_it(claude: anthropic.Anthropic) -> None:
    first = _ask(claude, "First question?")
    second = _ask(claude, "A different second question?")

    document_tokens = tokens.count(DOCUMENT)
    assert document_tokens >= 1024
    assert first.usage.cache_creation_input_tokens == document_tokens
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == document_tokens
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == document_tokens
    assert second.usage.cache_creation_input_tokens == 0


def test_input_tokens_exclude_cache_reads_and_writes(claude: anthropic.Anthropic) -> None:
    question = "How many facts?"
    total = claude.messages.count_tokens(
        model=ANTHROPIC_MODEL, system=_system(), messages=[{"role": "user", "content": question}]
    ).input_tokens
    first = _ask(claude, question)
    second = _ask(claude, question)

    assert first.usage.input_tokens == total - first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == total - second.usage.cache_read_input_tokens
    assert first.usage.input_tokens == second.usage.input_tokens < 20


def test_prefix_below_the_model_minimum_is_not_cached(claude: anthropic.Anthropic) -> None:
    short = _system("A short system prompt.")
    _ask(claude, "Q?", system=short)
    again = _ask(claude, "Q?", system=short)

    assert again.usage.cache_creation_input_tokens == 0
    assert again.usage.cache_read_input_tokens == 0


def test_haiku_4_5_needs_4096_tokens_to_cache(claude: anthropic.Anthropic) -> None:
    on_haiku = _ask(claude, "Q?", model="claude-haiku-4-5")
    longer = _system(DOCUMENT * 3)
    long_on_haiku = _ask(claude, "Q?", model="claude-haiku-4-5", system=longer)

    assert 1024 <= tokens.count(DOCUMENT) < 4096
    assert on_haiku.usage.cache_creation_input_tokens == 0
    assert long_on_haiku.usage.cache_creation_input_tokens == tokens.count(DOCUMENT * 3)


def test_one_hour_breakpoints_are_reported_apart(claude: anthropic.Anthropic) -> None:
    system = [
        {"type": "text", "text": DOCUMENT, "cache_control": {**EPHEMERAL, "ttl": "1h"}},
        {"type": "text", "text": "More: " + DOCUMENT[:2000], "cache_control": EPHEMERAL},
    ]
    message = _ask(claude, "Q?", system=system)

    creation = message.usage.cache_creation
    assert creation.ephemeral_1h_input_tokens == tokens.count(DOCUMENT)
    assert creation.ephemeral_5m_input_tokens == tokens.count("More: " + DOCUMENT[:2000])
    assert message.usage.cache_creation_input_tokens == (
        creation.ephemeral_1h_input_tokens + creation.ephemeral_5m_input_tokens
    )


def test_moving_breakpoint_reads_the_earlier_conversation_prefix(
    claude: anthropic.Anthropic,
) -> None:
    turn = {"type": "text", "text": DOCUMENT}
    first_turns = [{"role": "user", "content": [{**turn, "cache_control": EPHEMERAL}]}]
    first = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=20, messages=first_turns)
    later_turns = [
        {"role": "user", "content": [turn]},
        {"role": "assistant", "content": first.content[0].text},
        {"role": "user", "content": [{"type": "text", "text": "And?", "cache_control": EPHEMERAL}]},
    ]
    later = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=20, messages=later_turns)

    assert later.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens > 0
    assert later.usage.cache_creation_input_tokens > 0
    assert later.usage.input_tokens == 0


def test_changed_prefix_misses_the_cache(claude: anthropic.Anthropic) -> None:
    _ask(claude, "Q?")
    changed = _ask(claude, "Q?", system=_system("Changed. " + DOCUMENT))

    assert changed.usage.cache_read_input_tokens == 0
    assert changed.usage.cache_creation_input_tokens > 0


def test_caches_are_kept_per_api_key(claude: anthropic.Anthropic, sandbox: SandboxServer) -> None:
    _ask(claude, "Q?")
    other = anthropic.Anthropic(
        api_key=f"sk-{uuid.uuid4().hex}", base_url=sandbox.base_url, max_retries=0
    )
    first_for_other = _ask(other, "Q?")

    assert first_for_other.usage.cache_read_input_tokens == 0
    assert first_for_other.usage.cache_creation_input_tokens == tokens.count(DOCUMENT)


def test_stream_reports_cache_usage_in_message_start(claude: anthropic.Anthropic) -> None:
    _ask(claude, "Q?")
    with claude.messages.stream(
        model=ANTHROPIC_MODEL,
        max_tokens=20,
        system=_system(),
        messages=[{"role": "user", "content": "Q?"}],
    ) as stream:
        start = next(e for e in stream if e.type == "message_start")
        final = stream.get_final_message()

    assert start.message.usage.cache_read_input_tokens == tokens.count(DOCUMENT)
    assert final.usage.cache_read_input_tokens == tokens.count(DOCUMENT)


def test_top_level_cache_control_marks_the_last_block(claude: anthropic.Anthropic) -> None:
    first = _ask(claude, DOCUMENT, system="Be brief.", extra_body={"cache_control": EPHEMERAL})
    second = _ask(claude, DOCUMENT, system="Be brief.", extra_body={"cache_control": EPHEMERAL})

    assert first.usage.cache_creation_input_tokens > 1024
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl_and_reads_refresh_them() -> None:
    clock = _Clock()
    cache = AnthropicPromptCache(clock)
    segments = [Segment(2000, "abc", "5m")]

    def apply() -> int:
        return cache.apply(api_key="k", model="m", segments=segments, min_cacheable=1024).read

    assert apply() == 0
    clock.now += 299
    assert apply() == 2000
    clock.now += 299  # within 5 minutes of the read, not of the write
    assert apply() == 2000
    clock.now += 301
    assert apply() == 0
