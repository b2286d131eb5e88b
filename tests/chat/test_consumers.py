"""The browser door end to end: the ASGI application, a signed-in session, the real SDK
against the running sandbox, and htmx fragments coming back over the websocket."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator

from budgets.services import budget_state
from chat.models import Conversation, Message
from chatsite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(path: str, cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def open_socket(conversation, cookie: bytes) -> WebsocketCommunicator:
    """Connect and read the resync frame every (re)connect starts with."""
    ws = communicator(f"/ws/chat/{conversation.id}/", cookie)
    connected, _ = await ws.connect()
    assert connected
    resync = await ws.receive_from(timeout=5)
    assert 'id="messages"' in resync
    ws.resync = resync
    return ws


async def receive_until(ws: WebsocketCommunicator, marker: str, limit: int = 500) -> list[str]:
    """Frames up to the one holding `marker`; the budget meter's updates are skipped."""
    frames = []
    for _ in range(limit):
        frame = await ws.receive_from(timeout=10)
        if 'id="budget-bar"' in frame and marker not in frame:
            continue
        frames.append(frame)
        if marker in frame:
            return frames
    raise AssertionError(f"{marker!r} never arrived in {len(frames)} frames")


def send(text: str, model: str = "claude-sonnet-4-6", **extra: str) -> str:
    return json.dumps({"action": "send", "message": text, "model": model, "HEADERS": {}, **extra})


async def test_signed_in_user_sees_the_answer_stream_token_by_token(
    providers, user, session_cookie, settings
):
    settings.CHAT_FRAME_INTERVAL = 0  # one frame per token, to count them
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("Explain **markdown** <b>please</b>"))
        frames = await receive_until(ws, "assistant status-done")
    finally:
        await ws.disconnect()

    started, *deltas, done = frames
    assert 'hx-swap-oob="beforeend:#messages"' in started
    # The user's own text is escaped, never markup.
    assert "Explain **markdown** &lt;b&gt;please&lt;/b&gt;" in started
    assert len(deltas) > 10
    assert all('hx-swap-oob="beforeend:#msg-' in frame for frame in deltas)
    assert "<strong>" in done  # the finished answer is rendered as markdown
    assert "&lt;b&gt;please&lt;/b&gt;" in done  # and the echoed HTML stays inert
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    assert answer.status == Message.Status.DONE
    assert answer.content.startswith('You asked: "Explain **markdown** <b>please</b>"')


async def test_deltas_are_coalesced_into_fewer_frames(providers, user, session_cookie, settings):
    settings.CHAT_FRAME_INTERVAL = 0.05
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("sandbox-reply:200 go"))
        frames = await receive_until(ws, "assistant status-done")
    finally:
        await ws.disconnect()
    delta_frames = [f for f in frames if "beforeend:#msg-" in f]
    assert 1 <= len(delta_frames) < 100  # 200 tokens at 4000/s in far fewer frames


async def test_anonymous_socket_is_refused(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    ws = communicator(f"/ws/chat/{conversation.id}/", None)
    connected, code = await ws.connect()
    assert not connected
    assert code == 4401


async def test_another_users_conversation_is_refused(providers, other_user, session_cookie):
    theirs = await Conversation.objects.acreate(user=other_user)
    ws = communicator(f"/ws/chat/{theirs.id}/", session_cookie)
    connected, code = await ws.connect()
    assert not connected
    assert code == 4404
    ws = communicator("/ws/chat/not-a-uuid/", session_cookie)
    connected, code = await ws.connect()
    assert (connected, code) == (False, 4404)


@pytest.mark.parametrize(
    ("frame", "notice"),
    [
        ("{not json", "unreadable"),
        ("[1, 2]", "unexpected"),
        (json.dumps({"action": "dance"}), "Unknown action"),
        (json.dumps({"action": "send", "message": ["x"]}), "must be text"),
        (json.dumps({"action": "send", "message": "   "}), "Type a message"),
        (json.dumps({"action": "send", "message": "y" * 40_000}), "the limit is 32,000"),
        ("z" * 300_000, "too large"),
    ],
)
async def test_bad_frames_get_a_notice_and_store_nothing(
    providers, user, session_cookie, frame, notice
):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=frame)
        reply = await ws.receive_from(timeout=5)
    finally:
        await ws.disconnect()
    assert 'id="notice"' in reply
    assert notice in reply
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_stop_keeps_the_partial_answer(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("sandbox-fault:slow"))
        await receive_until(ws, "beforeend:#msg-")  # the first token is on screen
        await ws.send_to(text_data=json.dumps({"action": "stop"}))
        frames = await receive_until(ws, "assistant status-stopped")
    finally:
        await ws.disconnect()
    assert "stopped" in frames[-1]
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    assert answer.status == Message.Status.STOPPED
    assert answer.content


async def test_provider_failure_is_shown_in_the_page(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("sandbox-fault:529"))
        frames = await receive_until(ws, "assistant status-failed")
    finally:
        await ws.disconnect()
    assert "Claude is overloaded" in frames[-1]


async def test_regenerate_and_continue_from_the_page(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("sandbox-fault:drop@3"))
        await receive_until(ws, "assistant status-interrupted")
        first = await Message.objects.aget(conversation=conversation, role="assistant")
        await ws.send_to(text_data=json.dumps({"action": "continue", "model": ""}))
        frames = await receive_until(ws, "assistant status-done")
        assert f'id="msg-{first.id}" hx-swap-oob="outerHTML"' in frames[0]
        await ws.send_to(text_data=json.dumps({"action": "regenerate", "model": "gpt-5-mini"}))
        # The same message is answered again, so the same fault interrupts it again.
        frames = await receive_until(ws, "assistant status-interrupted")
        assert f'id="msg-{first.id}" hx-swap-oob="delete"' in frames[0]
    finally:
        await ws.disconnect()
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    assert answer.id != first.id
    assert answer.model == "gpt-5-mini"


async def test_reply_length_choice_sets_max_tokens(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("How long?", length="short"))
        await receive_until(ws, "assistant status-done")
    finally:
        await ws.disconnect()
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    assert "max_tokens 256." in answer.content  # the sandbox describes the request it got


@pytest.mark.parametrize("length", ["huge", 5, ["short"]])
async def test_unknown_reply_length_is_refused(providers, user, session_cookie, length):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=json.dumps({"action": "send", "message": "x", "length": length}))
        reply = await ws.receive_from(timeout=5)
    finally:
        await ws.disconnect()
    assert "Choose a reply length" in reply
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_resync_action_redraws_the_conversation(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    await Message.objects.acreate(conversation=conversation, role="user", content="Stored before")
    ws = await open_socket(conversation, session_cookie)
    try:
        assert "Stored before" in ws.resync
        await ws.send_to(text_data=json.dumps({"action": "resync"}))
        again = await ws.receive_from(timeout=5)
    finally:
        await ws.disconnect()
    assert 'id="messages"' in again
    assert "Stored before" in again


async def test_an_unhashable_action_is_refused_clearly(providers, user, session_cookie):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=json.dumps({"action": ["send"]}))
        reply = await ws.receive_from(timeout=5)
    finally:
        await ws.disconnect()
    assert "Unknown action" in reply


async def test_budget_refusal_shows_why_and_when_it_resets_and_stores_nothing(
    providers, user, session_cookie
):
    from budgets.models import Plan, Quota

    plan = await Plan.objects.acreate(
        name="tiny", daily_tokens=10, requests_per_minute=100, concurrent_streams=5,
        max_output_tokens=4096,
    )  # fmt: skip
    await Quota.objects.aupdate_or_create(user=user, defaults={"plan": plan})
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("Anything?"))
        notice = await ws.receive_from(timeout=5)
        meter = await ws.receive_from(timeout=5)
    finally:
        await ws.disconnect()
    assert 'id="notice"' in notice
    assert "resets" in notice
    assert 'id="budget-bar"' in meter
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_the_meter_and_conversation_total_update_after_a_turn(
    providers, user, session_cookie
):
    conversation = await Conversation.objects.acreate(user=user)
    ws = await open_socket(conversation, session_cookie)
    try:
        await ws.send_to(text_data=send("Meter me"))
        await receive_until(ws, "assistant status-done")
        meter = await ws.receive_from(timeout=5)
    finally:
        await ws.disconnect()
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    total = answer.input_tokens + answer.output_tokens
    state = await budget_state(user_id=user.id)
    assert state.tokens_used == total
    assert 'id="budget-bar"' in meter
    assert f"This conversation: {total} tokens" in meter
    assert f"{total:,} of {state.tokens_limit:,} tokens today" in meter
