"""Generations outlive their socket: tabs, reloads, dead processes, another Daphne."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape

import pytest
import websockets

from chat.models import Conversation, Message
from chat.services import generations
from tests.chat.test_consumers import communicator, open_socket, receive_until, send

pytestmark = pytest.mark.django_db(transaction=True)


def live_text(frame: str, message_id: int) -> str:
    """The text of a streaming answer inside a resync frame."""
    match = re.search(rf'id="msg-{message_id}-text">(.*?)</div>', frame, re.S)
    assert match, frame[:500]
    return unescape(match.group(1))


def delta_text(frames: list[str]) -> str:
    texts = re.findall(r'hx-swap-oob="beforeend:#msg-\d+-text">(.*?)</div>', "".join(frames), re.S)
    return unescape("".join(texts))


async def wait_for_status(message_id: int, status: str, timeout: float = 15) -> Message:
    for _ in range(int(timeout / 0.05)):
        message = await Message.objects.aget(pk=message_id)
        if message.status == status:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {message_id} is {message.status}, not {status}")


async def test_two_tabs_both_stream_the_same_answer(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    first = await open_socket(conversation, session_cookie)
    second = await open_socket(conversation, session_cookie)
    try:
        await first.send_to(text_data=send("sandbox-reply:80 hello both"))
        seen_first = await receive_until(first, "assistant status-done")
        seen_second = await receive_until(second, "assistant status-done")
    finally:
        await first.disconnect()
        await second.disconnect()
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    assert delta_text(seen_first) == delta_text(seen_second) == answer.content
    assert "beforeend:#messages" in seen_second[0]  # the other tab got the new turn too


async def test_closing_the_tab_does_not_stop_the_generation(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    await ws.send_to(text_data=send("sandbox-reply:300 keep going"))
    await receive_until(ws, "beforeend:#msg-")
    await ws.disconnect()
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    answer = await wait_for_status(answer.id, Message.Status.DONE)
    assert len(answer.content) > 300


async def test_reconnect_shows_the_text_so_far_then_the_rest_without_gaps_or_repeats(
    user, session_cookie, settings, sandbox_server
):
    from sandbox.server import SandboxServer

    with SandboxServer(tokens_per_second=150.0, ttft_ms=0) as paced:
        settings.ANTHROPIC_API_KEY = "sk-ant-test"
        settings.ANTHROPIC_BASE_URL = paced.base_url
        conversation = await Conversation.objects.acreate(user=user)
        ws = await open_socket(conversation, session_cookie)
        await ws.send_to(text_data=send("sandbox-reply:150 a long one"))
        await receive_until(ws, "beforeend:#msg-")
        await ws.disconnect()
        await asyncio.sleep(0.3)  # tokens arrive while nobody watches

        again = await open_socket(conversation, session_cookie)
        resync = again.resync
        answer = await Message.objects.aget(conversation=conversation, role="assistant")
        so_far = live_text(resync, answer.id)
        rest = await receive_until(again, "assistant status-done")
        await again.disconnect()
    answer = await Message.objects.aget(pk=answer.id)
    assert so_far
    assert so_far + delta_text(rest) == answer.content


async def test_stop_from_another_process_reaches_the_generation(providers, user):
    """Stop travels over Redis pub/sub; the process that runs the generation cancels it."""
    conversation = await Conversation.objects.acreate(user=user)
    started = await generations.generation_start(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:slow"
    )
    message_id = started.assistant_message_id
    snapshot = await generations.generation_snapshot(message_id)
    async for frame in generations.generation_follow(message_id, after=snapshot.last_id):
        if frame["type"] == "delta":
            break
    # What generation_stop does in a process that does not run the generation.
    await generations.redis_client().publish(generations.STOP_CHANNEL, str(message_id))
    answer = await wait_for_status(message_id, Message.Status.STOPPED)
    assert answer.content
    assert await generations.active_generation(conversation.id) is None


async def test_a_stop_whose_cancellation_was_swallowed_still_stops_the_generation(providers, user):
    """redis-py 8.1 can swallow a task's cancellation mid-command: the stop flag remains."""
    conversation = await Conversation.objects.acreate(user=user)
    started = await generations.generation_start(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:slow"
    )
    message_id = started.assistant_message_id
    async for frame in generations.generation_follow(message_id):
        if frame["type"] == "delta":
            break
    generations._stopping.add(message_id)  # what a swallowed task.cancel() leaves behind
    answer = await wait_for_status(message_id, Message.Status.STOPPED)
    assert answer.content
    # The flag is cleared once the generation has wound up, just after the status is written.
    for _ in range(100):
        if message_id not in generations._stopping:
            break
        await asyncio.sleep(0.05)
    assert message_id not in generations._stopping


async def test_a_dead_generation_is_marked_interrupted_by_its_readers(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    user_message = await Message.objects.acreate(
        conversation=conversation, role="user", content="hi"
    )
    answer = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", content=""
    )
    redis = generations.redis_client()
    started = {"type": "started", "assistant_message_id": answer.id}
    await redis.xadd(generations.stream_key(answer.id), {"e": json.dumps(started)})
    await redis.xadd(
        generations.stream_key(answer.id), {"e": json.dumps({"type": "delta", "text": "Half"})}
    )
    frames = [f async for f in generations.generation_follow(answer.id, block_ms=50)]
    assert frames[-1]["type"] == "interrupted"
    answer = await Message.objects.aget(pk=answer.id)
    assert answer.status == Message.Status.INTERRUPTED
    assert answer.content == "Half"
    assert user_message.id < answer.id


async def test_a_second_daphne_shows_and_stops_a_generation_running_in_the_first(
    daphne_server, user, session_cookie
):
    """The live Daphne runs the generation; this process's ASGI app shows it and stops it."""
    conversation = await Conversation.objects.acreate(user=user)
    url = daphne_server.url.replace("http", "ws") + f"/ws/chat/{conversation.id}/"
    async with websockets.connect(
        url, additional_headers={"Cookie": session_cookie.decode(), "Origin": daphne_server.url}
    ) as remote:
        await remote.recv()  # resync
        await remote.send(send("sandbox-reply:400 a long answer"))
        while "beforeend:#msg-" not in await remote.recv():
            pass
        local = communicator(f"/ws/chat/{conversation.id}/", session_cookie)
        assert (await local.connect())[0]
        resync = await local.receive_from(timeout=5)
        answer = await Message.objects.aget(conversation=conversation, role="assistant")
        assert f'id="msg-{answer.id}-text"' in resync
        assert "status-streaming" in resync
        await local.receive_from(timeout=5)  # and it keeps streaming here
        await local.send_to(text_data=json.dumps({"action": "stop"}))
        frames = await receive_until(local, "assistant status-stopped")
        await local.disconnect()
    answer = await wait_for_status(answer.id, Message.Status.STOPPED)
    assert answer.content
    assert "stopped" in frames[-1]
