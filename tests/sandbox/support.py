"""Constants the sandbox tests share."""

from __future__ import annotations

ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-4o-mini"
