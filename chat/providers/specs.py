"""ModelInfo and the model table: sizes, tokenizer, caching floor and published prices.

Prices are US dollars per million tokens, standard tier, as the providers publish them. They are
the defaults: a ModelPrice row in Django admin overrides any of them (chat/providers/pricing.py).

Anthropic (https://www.anthropic.com/pricing, https://docs.anthropic.com/en/docs/about-claude/
pricing), as published, last checked by the author early 2026 from memory; these machines have no
internet, so verify before production. Prompt caching is priced from the base input price: a
5-minute cache write costs 1.25x, a 1-hour write 2x, a cache read 0.1x. Minimum cacheable prompt
(Anthropic's prompt-caching docs): 4096 tokens for Opus 4.5/4.6 and Haiku 4.5, 1024 for Sonnet.

OpenAI (https://openai.com/api/pricing, https://platform.openai.com/docs/pricing), as published,
last checked by the author late 2025 from memory; verify before production. Cached input is priced
as published; there is no charge for writing the cache. Caching starts at 1024 prompt tokens.

Models newer than the author's price lists (ids the installed anthropic SDK names, e.g.
claude-opus-5-5) are listed without prices: they are offered only once an admin enters their price
(a ModelPrice row), so no call is ever made at an unknown price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from chat.providers.base import ProviderName

Encoding = Literal["o200k_base", "cl100k_base"]
CLAUDE_CACHE_WRITE_5M = Decimal("1.25")
CLAUDE_CACHE_WRITE_1H = Decimal("2")
CLAUDE_CACHE_READ = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model the service can offer; `prices` is None until someone enters them."""

    id: str
    provider: ProviderName
    label: str
    context_window: int
    max_output: int
    encoding: Encoding
    min_cacheable: int
    prices: Prices | None

    @property
    def provider_label(self) -> str:
        """How messages name the provider's models ("Claude is overloaded")."""
        return "Claude" if self.provider == "anthropic" else "GPT"


def claude_prices(input_: str, output: str) -> Prices:
    """Claude prices: cache writes and reads follow from the input price."""
    base = Decimal(input_)
    return Prices(
        input=base,
        output=Decimal(output),
        cache_write_5m=base * CLAUDE_CACHE_WRITE_5M,
        cache_write_1h=base * CLAUDE_CACHE_WRITE_1H,
        cache_read=base * CLAUDE_CACHE_READ,
    )


def openai_prices(input_: str, cached: str, output: str) -> Prices:
    """OpenAI prices: cached input as published, no cache-write charge (writes bill as input)."""
    base = Decimal(input_)
    return Prices(base, Decimal(output), base, base, Decimal(cached))


def _claude(
    model_id: str, label: str, max_output: int, floor: int, prices: Prices | None
) -> ModelInfo:
    # Claude's tokenizer is not public: o200k_base stands in, scaled (chat/providers/tokens.py).
    return ModelInfo(model_id, "anthropic", label, 200_000, max_output, "o200k_base", floor, prices)


def _gpt(model_id: str, label: str, window: int, max_output: int, prices: Prices) -> ModelInfo:
    return ModelInfo(model_id, "openai", label, window, max_output, "o200k_base", 1024, prices)


# Catalog order is the order of the model picker; the first available model is the default.
MODELS: tuple[ModelInfo, ...] = (
    # Anthropic: $ per MTok input / output (cache prices derived), as published, checked 2026-02.
    _claude("claude-sonnet-4-6", "Claude Sonnet 4.6", 64_000, 1024, claude_prices("3", "15")),
    _claude("claude-opus-4-6", "Claude Opus 4.6", 128_000, 4096, claude_prices("5", "25")),
    _claude("claude-haiku-4-5", "Claude Haiku 4.5", 64_000, 4096, claude_prices("1", "5")),
    _claude("claude-opus-4-5", "Claude Opus 4.5", 64_000, 4096, claude_prices("5", "25")),
    _claude("claude-sonnet-4-5", "Claude Sonnet 4.5", 64_000, 1024, claude_prices("3", "15")),
    # Newer than the author's price list: offered once priced in admin.
    _claude("claude-opus-5-5", "Claude Opus 5.5", 128_000, 4096, None),
    _claude("claude-sonnet-5-5", "Claude Sonnet 5.5", 64_000, 1024, None),
    _claude("claude-haiku-5-5", "Claude Haiku 5.5", 64_000, 4096, None),
    # OpenAI: $ per MTok input / cached input / output, as published, checked 2025-11.
    _gpt("gpt-5-mini", "GPT-5 mini", 400_000, 128_000, openai_prices("0.25", "0.025", "2.00")),
    _gpt("gpt-5", "GPT-5", 400_000, 128_000, openai_prices("1.25", "0.125", "10.00")),
    _gpt("gpt-5-nano", "GPT-5 nano", 400_000, 128_000, openai_prices("0.05", "0.005", "0.40")),
    _gpt("gpt-4.1", "GPT-4.1", 1_047_576, 32_768, openai_prices("2.00", "0.50", "8.00")),
    _gpt("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 32_768, openai_prices("0.40", "0.10", "1.60")),
    _gpt("gpt-4o", "GPT-4o", 128_000, 16_384, openai_prices("2.50", "1.25", "10.00")),
    _gpt("gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, openai_prices("0.15", "0.075", "0.60")),
)
BY_ID: dict[str, ModelInfo] = {model.id: model for model in MODELS}


def spec(model_id: str) -> ModelInfo | None:
    """The table's entry for a model id (code defaults, no admin overrides)."""
    return BY_ID.get(model_id)
