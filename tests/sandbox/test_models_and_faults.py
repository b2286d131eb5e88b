"""The model table's rules and the fault directive grammar."""

from __future__ import annotations

import pytest

from sandbox import faults
from sandbox.models import anthropic_model, openai_model


@pytest.mark.parametrize(
    ("model_id", "floor"),
    [
        ("claude-sonnet-4-6", 1024),
        ("claude-sonnet-4-5", 1024),
        ("claude-opus-4-5", 4096),
        ("claude-opus-4-6", 4096),
        ("claude-haiku-4-5", 4096),
        ("claude-3-5-haiku-20241022", 2048),
        ("claude-3-haiku-20240307", 2048),
    ],
)
def test_minimum_cacheable_prompt_follows_anthropics_table(model_id: str, floor: int) -> None:
    spec = anthropic_model(model_id)

    assert spec is not None
    assert spec.min_cacheable == floor


def test_max_context_caps_every_window() -> None:
    assert anthropic_model("claude-sonnet-4-6", max_context=5000).context_window == 5000
    assert openai_model("gpt-4.1", max_context=5000).context_window == 5000
    assert openai_model("gpt-4o").context_window == 128_000


def test_openai_snapshots_take_their_familys_limits() -> None:
    snapshot = openai_model("gpt-4o-mini-2024-07-18")

    assert snapshot is not None
    assert snapshot.id == "gpt-4o-mini-2024-07-18"
    assert snapshot.max_output == 16_384
    assert openai_model("gpt-5-nano").context_window == 400_000
    assert openai_model("llama-3") is None
    assert anthropic_model("gpt-4o") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("please sandbox-fault:429 now", faults.Fault("status", status=429)),
        ("sandbox-fault:529x2", faults.Fault("status", status=529, times=2)),
        ("sandbox-fault:hang", faults.Fault("hang")),
        ("sandbox-fault:slow.", faults.Fault("slow")),
        ("sandbox-fault:error@12", faults.Fault("error", after=12)),
        ("sandbox-fault:drop@0", faults.Fault("drop", after=0)),
        ("no directive here", None),
        ("sandbox-fault:404", None),
    ],
)
def test_fault_directives_parse(text: str, expected: faults.Fault | None) -> None:
    assert faults.detect(None, text) == expected


def test_fault_header_wins_over_the_message() -> None:
    assert faults.detect("503x1", "sandbox-fault:hang") == faults.Fault("status", 503, times=1)
    with pytest.raises(faults.FaultSpecError):
        faults.detect("teapot", "")
