"""The Message Batches emulation, driven by the real anthropic SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import anthropic
import pytest

from sandbox import tokens
from sandbox.server import SandboxServer
from tests.sandbox.support import ANTHROPIC_MODEL


def request(custom_id: str, text: str, **params: object) -> dict[str, object]:
    params = {"model": ANTHROPIC_MODEL, "max_tokens": 300, **params}
    params["messages"] = [{"role": "user", "content": text}]
    return {"custom_id": custom_id, "params": params}


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.processing_status}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def slow_batches() -> Iterator[SandboxServer]:
    """A sandbox whose batches take 2 s, long enough to cancel one part-way."""
    with SandboxServer(tokens_per_second=2000.0, ttft_ms=0, batch_seconds=2.0) as server:
        yield server


def test_batch_processes_then_ends_with_one_result_per_request(
    claude: anthropic.Anthropic,
) -> None:
    batch = claude.messages.batches.create(
        requests=[request("doc-1", "Summarise: the sky is blue."), request("doc-2", "And grass?")]
    )

    assert batch.id.startswith("msgbatch_")
    assert batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 2
    assert batch.request_counts.succeeded == 0
    assert batch.results_url is None
    assert batch.ended_at is None
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(86_400, abs=1)

    ended = wait_ended(claude, batch.id)
    assert ended.request_counts.processing == 0
    assert ended.request_counts.succeeded == 2
    assert ended.ended_at is not None
    assert ended.ended_at >= ended.created_at
    assert ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")

    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert set(results) == {"doc-1", "doc-2"}
    first = results["doc-1"]
    assert first.type == "succeeded"
    text = first.message.content[0].text
    assert "Summarise: the sky is blue." in text
    assert first.message.usage.output_tokens == tokens.count(text)
    assert first.message.usage.service_tier == "batch"
    counted = claude.messages.count_tokens(
        model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "Summarise: the sky is blue."}]
    )
    assert first.message.usage.input_tokens == counted.input_tokens


def test_batch_result_matches_the_messages_api_reply(claude: anthropic.Anthropic) -> None:
    text = "What is a batch?"
    direct = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=300, messages=[{"role": "user", "content": text}]
    )
    batch = claude.messages.batches.create(requests=[request("only", text)])
    wait_ended(claude, batch.id)
    [line] = list(claude.messages.batches.results(batch.id))

    assert line.result.message.content[0].text == direct.content[0].text
    assert line.result.message.usage.output_tokens == direct.usage.output_tokens
    assert line.result.message.stop_reason == "end_turn"


def test_max_tokens_cuts_a_batched_reply(claude: anthropic.Anthropic) -> None:
    batch = claude.messages.batches.create(
        requests=[request("short", "sandbox-reply:200 please", max_tokens=10)]
    )
    wait_ended(claude, batch.id)
    [line] = list(claude.messages.batches.results(batch.id))

    assert line.result.message.stop_reason == "max_tokens"
    assert line.result.message.usage.output_tokens == 10


def test_a_fault_directive_makes_only_that_item_errored(claude: anthropic.Anthropic) -> None:
    batch = claude.messages.batches.create(
        requests=[request("ok", "Fine."), request("bad", "sandbox-fault:529 Broken.")]
    )
    ended = wait_ended(claude, batch.id)

    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 1)
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert results["ok"].type == "succeeded"
    assert results["bad"].type == "errored"
    assert results["bad"].error.type == "error"
    assert results["bad"].error.error.type == "overloaded_error"


def test_cancel_part_way_cancels_the_unfinished_items(slow_batches: SandboxServer) -> None:
    client = anthropic.Anthropic(api_key="sk-cancel", base_url=slow_batches.base_url, max_retries=0)
    batch = client.messages.batches.create(
        requests=[request(f"item-{i}", f"Document {i}") for i in range(4)]
    )
    time.sleep(0.6)  # about a quarter of the items are done by now

    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None

    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert counts.succeeded + counts.canceled == 4
    assert 1 <= counts.succeeded < 4
    kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
    assert kinds == ["succeeded"] * counts.succeeded + ["canceled"] * counts.canceled

    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(batch.id)


def test_results_before_the_end_are_refused(slow_batches: SandboxServer) -> None:
    client = anthropic.Anthropic(api_key="sk-early", base_url=slow_batches.base_url, max_retries=0)
    batch = client.messages.batches.create(requests=[request("a", "Wait for me.")])

    with pytest.raises(anthropic.AnthropicError, match="in_progress"):
        client.messages.batches.results(batch.id)
    with pytest.raises(anthropic.BadRequestError, match="still processing"):
        client.messages.batches.delete(batch.id)


def test_list_pages_newest_first_and_delete_removes(claude: anthropic.Anthropic) -> None:
    ids = [claude.messages.batches.create(requests=[request("x", f"n{i}")]).id for i in range(3)]

    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]]
    assert page.has_more is True
    assert [b.id for b in claude.messages.batches.list(limit=2)] == ids[::-1]

    wait_ended(claude, ids[0])
    deleted = claude.messages.batches.delete(ids[0])
    assert (deleted.id, deleted.type) == (ids[0], "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(ids[0])


def test_another_key_cannot_see_a_batch(claude: anthropic.Anthropic, sandbox) -> None:
    batch = claude.messages.batches.create(requests=[request("x", "mine")])
    stranger = anthropic.Anthropic(api_key="sk-other", base_url=sandbox.base_url, max_retries=0)

    with pytest.raises(anthropic.NotFoundError):
        stranger.messages.batches.retrieve(batch.id)


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "at least 1 item"),
        ([request("same", "a"), request("same", "b")], "Duplicate custom_id 'same'"),
        ([request("bad id!", "a")], "requests.0.custom_id: String should match pattern"),
        ([{"custom_id": "a", "params": {"model": ANTHROPIC_MODEL, "messages": []}}], "requests.0"),
        (
            [
                {
                    "custom_id": "a",
                    "params": {
                        "model": ANTHROPIC_MODEL,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
            ],
            "requests.0.params: max_tokens: Field required",
        ),
        ([request("a", "hi", max_tokens=10**6)], "requests.0.params: max_tokens: 1000000 >"),
        ([request("a", "hi", stream=True)], "Streaming is not supported in batches"),
        ([request("a", "hi", model="gpt-4o")], "model: gpt-4o"),
    ],
)
def test_invalid_batches_are_refused_whole(
    claude: anthropic.Anthropic, requests: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(anthropic.APIStatusError, match=message) as refused:
        claude.messages.batches.create(requests=requests)

    assert refused.value.status_code in (400, 404)
    assert list(claude.messages.batches.list()) == []


def test_missing_key_is_refused(sandbox) -> None:
    import httpx2

    response = httpx2.get(
        sandbox.base_url + "/v1/messages/batches", headers={"anthropic-version": "2023-06-01"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_async_client_runs_a_batch(async_claude: anthropic.AsyncAnthropic) -> None:
    batch = await async_claude.messages.batches.create(requests=[request("a", "async please")])
    deadline = time.monotonic() + 10
    while (await async_claude.messages.batches.retrieve(batch.id)).processing_status != "ended":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    lines = [line async for line in await async_claude.messages.batches.results(batch.id)]

    assert [(line.custom_id, line.result.type) for line in lines] == [("a", "succeeded")]
