"""The models each emulated provider knows: context windows, output caps, caching floors.

Anthropic: any id starting with `claude-` is accepted; the table below gives the documented
values and unknown `claude-` ids fall back by family. Minimum cacheable prompt (from Anthropic's
prompt-caching docs): 4096 tokens for Claude Opus 4.5/4.6 and Haiku 4.5 (and, by extension, the
newer Opus and Haiku ids below), 2048 for Haiku 3.x, 1024 for every other model.
OpenAI: `gpt-*` and `o<digit>*` ids; a dated snapshot (`gpt-4o-2024-08-06`) takes its family's row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

Provider = Literal["anthropic", "openai"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the sandbox needs to know about one model."""

    id: str
    provider: Provider
    context_window: int
    max_output: int
    min_cacheable: int = 1024
    display_name: str = ""
    created: int = 1_735_689_600  # 2025-01-01, Unix seconds


def _claude(
    model_id: str, created: int, *, max_output: int = 64_000, floor: int = 1024
) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider="anthropic",
        context_window=200_000,
        max_output=max_output,
        min_cacheable=floor,
        display_name=_claude_display_name(model_id),
        created=created,
    )


def _claude_display_name(model_id: str) -> str:
    # "claude-haiku-4-5-20251001" -> "Claude Haiku 4.5"
    parts = [p for p in model_id.split("-") if not re.fullmatch(r"\d{8}", p)]
    words = [p.capitalize() for p in parts if not p.isdigit()]
    version = ".".join(p for p in parts if p.isdigit())
    return " ".join(words + ([version] if version else []))


# Newest first, as Anthropic's /v1/models lists them; the ids are those anthropic 2.14's
# `anthropic.types.Model` names.
ANTHROPIC_MODELS: tuple[ModelSpec, ...] = (
    _claude("claude-fable-5-2", 1_790_000_000),
    _claude("claude-mythos-5-2", 1_790_000_000),
    _claude("claude-haiku-5-5", 1_789_000_000, floor=4096),
    _claude("claude-sonnet-5-5", 1_789_000_000),
    _claude("claude-opus-5-5", 1_789_000_000, max_output=128_000, floor=4096),
    _claude("claude-fable-5-1", 1_785_000_000),
    _claude("claude-mythos-5-1", 1_785_000_000),
    _claude("claude-sonnet-5", 1_780_000_000),
    _claude("claude-fable-5", 1_780_000_000),
    _claude("claude-mythos-5", 1_780_000_000),
    _claude("claude-opus-5", 1_780_000_000, max_output=128_000, floor=4096),
    _claude("claude-opus-4-8", 1_776_000_000, max_output=128_000, floor=4096),
    _claude("claude-opus-4-7", 1_774_000_000, max_output=128_000, floor=4096),
    _claude("claude-mythos-preview", 1_772_000_000),
    _claude("claude-opus-4-6", 1_770_249_600, max_output=128_000, floor=4096),
    _claude("claude-sonnet-4-6", 1_771_372_800),
    _claude("claude-opus-4-5-20251101", 1_763_942_400, floor=4096),
    _claude("claude-haiku-4-5-20251001", 1_760_486_400, floor=4096),
    _claude("claude-sonnet-4-5-20250929", 1_759_104_000),
    _claude("claude-opus-4-1-20250805", 1_754_352_000, max_output=32_000),
    _claude("claude-sonnet-4-20250514", 1_747_267_200),
    _claude("claude-3-5-haiku-20241022", 1_729_555_200, max_output=8192, floor=2048),
)

# Aliases resolve to their dated snapshot, as on the real API.
_ANTHROPIC_ALIASES = {
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}


def _openai(model_id: str, window: int, max_output: int, created: int) -> ModelSpec:
    return ModelSpec(model_id, "openai", window, max_output, 1024, model_id, created)


OPENAI_MODELS: tuple[ModelSpec, ...] = (
    _openai("gpt-5", 400_000, 128_000, 1_754_425_777),
    _openai("gpt-5-mini", 400_000, 128_000, 1_754_425_928),
    _openai("gpt-5-nano", 400_000, 128_000, 1_754_426_384),
    _openai("gpt-4.1", 1_047_576, 32_768, 1_744_316_542),
    _openai("gpt-4.1-mini", 1_047_576, 32_768, 1_744_318_173),
    _openai("gpt-4.1-nano", 1_047_576, 32_768, 1_744_321_707),
    _openai("gpt-4o", 128_000, 16_384, 1_715_367_049),
    _openai("gpt-4o-mini", 128_000, 16_384, 1_721_172_741),
    _openai("o3", 200_000, 100_000, 1_744_225_308),
    _openai("o4-mini", 200_000, 100_000, 1_744_225_351),
)

_BY_ID = {m.id: m for m in ANTHROPIC_MODELS + OPENAI_MODELS}


def anthropic_model(model_id: str, *, max_context: int | None = None) -> ModelSpec | None:
    """Return the spec of a Claude model id, or None when the id is not a Claude model."""
    if not model_id.startswith("claude-"):
        return None
    spec = _BY_ID.get(_ANTHROPIC_ALIASES.get(model_id, model_id))
    if spec is None:
        spec = _claude(model_id, 1_760_000_000, floor=_fallback_floor(model_id))
    # The request's id is echoed back, as the real API echoes the id it was given.
    return _capped(replace(spec, id=model_id), max_context)


def _fallback_floor(model_id: str) -> int:
    if "haiku" in model_id:
        return 2048 if "claude-3" in model_id else 4096
    if "opus" in model_id:
        return 4096
    return 1024


def openai_model(model_id: str, *, max_context: int | None = None) -> ModelSpec | None:
    """Return the spec of a GPT or o-series model id (snapshots take their family's row)."""
    if not re.match(r"^(gpt-|o\d)", model_id):
        return None
    family = max(
        (m for m in OPENAI_MODELS if model_id == m.id or model_id.startswith(m.id + "-")),
        key=lambda m: len(m.id),
        default=None,
    )
    if family is None:
        if not re.match(r"^(gpt-[\w.]+|o\d[\w-]*)$", model_id):
            return None
        family = _openai(model_id, 128_000, 16_384, 1_735_689_600)
    return _capped(replace(family, id=model_id), max_context)


def _capped(spec: ModelSpec, max_context: int | None) -> ModelSpec:
    if max_context is None or max_context >= spec.context_window:
        return spec
    return replace(spec, context_window=max_context)
