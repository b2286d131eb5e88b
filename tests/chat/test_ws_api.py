"""The JSON websocket API end to end: the websockets package against a live Daphne."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from budgets.models import Plan, Quota, UsageRecord
from chat.frames import max_frame_bytes
from chat.models import Conversation, Message
from chat.services.api_keys import api_key_create, api_key_revoke
from chatsite.asgi import application

MODEL = "gpt-5-mini"


@pytest.fixture
def api_key(daphne_server, user) -> str:
    return api_key_create(user_id=user.id, name="tests")[1]


def ws_url(daphne_server) -> str:
    return daphne_server.url.replace("http://", "ws://") + "/ws/v1/chat/"


def opened(daphne_server, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(ws_url(daphne_server), additional_headers=headers, open_timeout=10)


async def frames_until(ws, *types: str, limit: int = 2000) -> list[dict]:
    frames = []
    for _ in range(limit):
        frame = json.loads(await ws.recv())
        frames.append(frame)
        if frame["type"] in types:
            return frames
    raise AssertionError(f"no {types} frame in {len(frames)}")


def send(message: str, **fields) -> str:
    return json.dumps({"type": "send", "message": message, "model": MODEL, **fields})


@sync_to_async
def set_plan(user, **fields) -> None:
    fields.setdefault("requests_per_minute", 1000)
    fields.setdefault("concurrent_streams", 100)
    plan = Plan.objects.create(name=f"test-{user.id}", **fields)
    Quota.objects.update_or_create(user=user, defaults={"plan": plan})


async def test_a_turn_streams_and_ends_with_usage_equal_to_the_ledger(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:6 hello", system="Be brief.", temperature=0.3))
        started, *deltas, finished = await frames_until(ws, "finished", "error")
    assert started["type"] == "started"
    assert finished["type"] == "finished", finished
    assert {frame["type"] for frame in deltas} <= {"delta", "notice"}
    text = "".join(frame["text"] for frame in deltas if frame["type"] == "delta")
    answer = await Message.objects.select_related("conversation").aget(pk=started["message_id"])
    assert answer.content == text
    assert answer.status == "done"
    assert str(answer.conversation_id) == started["conversation_id"]
    assert answer.conversation.system_prompt == "Be brief."
    record = await UsageRecord.objects.aget(message_id=started["message_id"])
    assert finished["usage"]["output_tokens"] == record.output_tokens == 6
    assert finished["usage"]["input_tokens"] == record.input_tokens
    assert round(finished["cost_usd"] * 1_000_000) == record.cost_micros > 0
    budget = finished["budget"]
    assert budget["tokens_used"] == finished["usage"]["total_tokens"]
    assert budget["tokens_limit"] > 0
    assert budget["resets_at"]


async def test_a_second_turn_continues_the_conversation(daphne_server, api_key, user):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:3 first"))
        first = (await frames_until(ws, "finished"))[0]
        await ws.send(send("sandbox-reply:3 second", conversation_id=first["conversation_id"]))
        second = (await frames_until(ws, "finished"))[0]
    assert second["conversation_id"] == first["conversation_id"]
    assert await Message.objects.filter(conversation__user=user).acount() == 4


async def test_stop_ends_the_answer_and_settles_it(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:400 a long answer"))
        started, _ = await frames_until(ws, "delta")
        await ws.send(json.dumps({"type": "stop"}))
        stopped = (await frames_until(ws, "stopped"))[-1]
    assert stopped["message_id"] == started["message_id"]
    answer = await Message.objects.aget(pk=started["message_id"])
    assert answer.status == "stopped"
    record = await UsageRecord.objects.aget(message_id=started["message_id"])
    assert record.outcome == "stopped"
    assert 0 < record.output_tokens < 400


async def test_a_stop_naming_the_conversation_works_from_another_process(daphne_server, api_key):
    """The live Daphne runs the answer; this process's ASGI app stops it over Redis."""
    async with opened(daphne_server, api_key) as remote:
        await remote.send(send("sandbox-reply:400 a long answer"))
        started, _ = await frames_until(remote, "delta")
        local = WebsocketCommunicator(
            application, "/ws/v1/chat/", headers=[(b"authorization", f"Bearer {api_key}".encode())]
        )
        assert (await local.connect())[0]
        stop = {"type": "stop", "conversation_id": started["conversation_id"]}
        await local.send_to(text_data=json.dumps(stop))
        stopped = (await frames_until(remote, "stopped", "finished"))[-1]
        await local.disconnect()
    assert stopped == {"type": "stopped", "message_id": started["message_id"]}
    answer = await Message.objects.aget(pk=started["message_id"])
    assert answer.status == "stopped"
    assert answer.content
    record = await UsageRecord.objects.aget(message_id=started["message_id"])
    assert record.outcome == "stopped"


async def test_a_stop_naming_someone_elses_conversation_is_not_found(
    daphne_server, api_key, other_user
):
    conversation = await Conversation.objects.acreate(user=other_user)
    async with opened(daphne_server, api_key) as ws:
        await ws.send(json.dumps({"type": "stop", "conversation_id": str(conversation.id)}))
        error = json.loads(await ws.recv())
    assert error["type"] == "error"
    assert error["code"] == "not_found"


async def settled(message_id: int) -> UsageRecord:
    """The ledger row of an answer, once the pipeline has settled it (within 10 s)."""
    for _ in range(200):
        record = await UsageRecord.objects.filter(message_id=message_id).afirst()
        if record is not None:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"answer {message_id} was not settled")


async def test_closing_the_socket_stops_the_answer_and_settles_it(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:400 a long answer"))
        started, _ = await frames_until(ws, "delta")
    record = await settled(started["message_id"])
    answer = await Message.objects.aget(pk=started["message_id"])
    assert answer.status == "stopped"
    assert record.outcome == "stopped"
    assert 0 < record.output_tokens < 400


async def test_temperature_zero_repeats_are_answered_from_the_response_cache(
    daphne_server, api_key
):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:5 the same question", temperature=0))
        first = (await frames_until(ws, "finished"))[-1]
        await ws.send(send("sandbox-reply:5 the same question", temperature=0))
        again = (await frames_until(ws, "finished"))[-1]
        await ws.send(send("sandbox-reply:5 the same question", temperature=0.5))
        warmer = (await frames_until(ws, "finished"))[-1]
    assert (first["cache_hit"], again["cache_hit"], warmer["cache_hit"]) == (False, True, False)
    assert again["cost_usd"] == 0


async def test_a_send_to_a_conversation_answering_elsewhere_is_busy(daphne_server, api_key):
    async with opened(daphne_server, api_key) as first, opened(daphne_server, api_key) as second:
        await first.send(send("sandbox-reply:300 long"))
        started = (await frames_until(first, "started"))[0]
        await second.send(send("hi", conversation_id=started["conversation_id"]))
        error = json.loads(await second.recv())
        assert error["code"] == "busy"
        await first.send(json.dumps({"type": "stop"}))
        await frames_until(first, "stopped")
    assert await Message.objects.filter(conversation_id=started["conversation_id"]).acount() == 2


async def test_a_second_send_while_streaming_is_busy(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:200 long"))
        await frames_until(ws, "started")
        await ws.send(send("another"))
        frames = await frames_until(ws, "error")
        assert frames[-1]["code"] == "busy"
        await ws.send(json.dumps({"type": "stop"}))
        await frames_until(ws, "stopped")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_request"),
        ("[1, 2]", "invalid_request"),
        ('{"type": "dance"}', "invalid_request"),
        ('{"type": "send"}', "invalid_request"),
        ('{"type": "send", "message": "hi", "max_tokens": "9"}', "invalid_request"),
        ('{"type": "send", "message": "hi", "temperature": 7}', "invalid_request"),
        ('{"type": "send", "message": "hi", "colour": "blue"}', "invalid_request"),
        ('{"type": "send", "message": "   "}', "message_empty"),
        ('{"type": "send", "message": "hi", "model": "gpt-nope"}', "model_unavailable"),
        (
            '{"type": "send", "message": "hi", '
            '"conversation_id": "00000000-0000-0000-0000-000000000000"}',
            "not_found",
        ),
    ],
)
async def test_malformed_frames_get_an_error_frame_and_store_nothing(
    daphne_server, api_key, frame, code
):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(frame)
        error = json.loads(await ws.recv())
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["message"]
        await ws.send(send("sandbox-reply:2 still works"))
        assert (await frames_until(ws, "finished"))[-1]["type"] == "finished"
    assert await Conversation.objects.acount() == 1


async def test_an_oversized_frame_is_refused_and_the_socket_stays_open(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("a" * max_frame_bytes()))
        error = json.loads(await ws.recv())
        assert error["code"] == "message_too_long"
        await ws.send(json.dumps({"type": "stop"}))  # nothing to stop: no reply
        await ws.send(send("sandbox-reply:2 ok"))
        assert (await frames_until(ws, "finished"))[0]["type"] == "started"
    assert not await UsageRecord.objects.filter(outcome="refused").aexists()


async def test_budget_refusal_is_an_error_frame_and_nothing_is_stored(daphne_server, api_key, user):
    await set_plan(user, daily_tokens=5)
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:5 hi"))
        error = json.loads(await ws.recv())
    assert error["type"] == "error"
    assert error["code"] == "budget_exceeded"
    assert error["resets_at"]
    assert not await Conversation.objects.aexists()
    assert not await UsageRecord.objects.aexists()


async def test_a_fault_mid_stream_is_an_error_frame_with_what_was_used(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:30 sandbox-fault:error@5"))
        frames = await frames_until(ws, "error", "finished")
    error = frames[-1]
    assert error["type"] == "error"
    assert error["message"]
    assert any(frame["type"] == "delta" for frame in frames)
    answer = await Message.objects.aget(pk=error["message_id"])
    assert answer.status == "interrupted"
    record = await UsageRecord.objects.aget(message_id=error["message_id"])
    assert round(error["cost_usd"] * 1_000_000) == record.cost_micros


@pytest.mark.parametrize("key", [None, "sk-chat-" + "x" * 43, "revoked"])
async def test_bad_or_revoked_keys_are_closed_with_4401(daphne_server, user, key):
    if key == "revoked":
        row, key = await sync_to_async(api_key_create)(user_id=user.id, name="old")
        await sync_to_async(api_key_revoke)(user_id=user.id, key_id=row.pk)
    async with opened(daphne_server, key) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4401


async def test_a_retry_is_announced_before_the_answer(daphne_server, api_key):
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-fault:529x1 sandbox-reply:3 retry me"))
        frames = await frames_until(ws, "finished", "error")
    retrying = next(frame for frame in frames if frame["type"] == "retrying")
    assert retrying["attempt"] == 2
    assert retrying["max_attempts"] >= 2
    assert retrying["delay"] > 0
    assert retrying["reason"]
    assert retrying["message"]
    assert frames[-1]["type"] == "finished"


def test_the_example_client_runs(daphne_server, api_key):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "ws_client.py"
    result = subprocess.run(
        [sys.executable, str(script), "--url", ws_url(daphne_server), "--model", MODEL,
         "sandbox-reply:4 from the example"],
        env={"CHAT_API_KEY": api_key, "PATH": ""},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tokens, $" in result.stderr


@pytest.mark.django_db(transaction=True)
async def test_losing_the_stream_is_an_error_frame_and_the_socket_can_go_on(
    providers, user, monkeypatch
):
    """In-process: Redis failing under the relay does not leave the socket busy."""
    from chat.services import generations

    async def broken_follow(message_id, **kwargs):
        raise ConnectionError("Redis went away")
        yield  # an async generator, like the real one

    _, key = await sync_to_async(api_key_create)(user_id=user.id, name="tests")
    ws = WebsocketCommunicator(
        application, "/ws/v1/chat/", headers=[(b"authorization", f"Bearer {key}".encode())]
    )
    assert (await ws.connect())[0]
    monkeypatch.setattr(generations, "generation_follow", broken_follow)
    await ws.send_to(text_data=send("sandbox-reply:3 first"))
    started = json.loads(await ws.receive_from(timeout=5))
    error = json.loads(await ws.receive_from(timeout=5))
    assert error["type"] == "error"
    assert error["code"] == "stream_interrupted"
    assert error["message_id"] == started["message_id"]
    monkeypatch.undo()
    assert (await settled(started["message_id"])).outcome == "finished"  # it went on
    for _ in range(100):  # its end frame clears the conversation's marker just after
        if await generations.active_generation(started["conversation_id"]) is None:
            break
        await asyncio.sleep(0.05)
    await ws.send_to(
        text_data=send("sandbox-reply:3 second", conversation_id=started["conversation_id"])
    )
    frames = [json.loads(await ws.receive_from(timeout=5)) for _ in range(2)]
    while frames[-1]["type"] not in ("finished", "error"):
        frames.append(json.loads(await ws.receive_from(timeout=5)))
    await ws.disconnect()
    assert frames[0]["type"] == "started"
    assert frames[-1]["type"] == "finished"
