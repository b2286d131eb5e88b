"""Generations that outlive their socket: frames in a Redis Stream, stop from any process.

A generation belongs to the conversation, not to the websocket that asked for it. The
process that starts it runs `run_turn` in a task of its own, coalesces the deltas into
frames and appends every frame to a capped, expiring Redis Stream (`chat:gen:<message
id>`). Any reader in any process (the asking tab, a second tab, a reload, another Daphne)
takes a snapshot of the stream and then XREADs from the last id it has shown, so nothing
is lost or repeated. Tokens never travel over channel-layer groups (they drop messages
over capacity); only the small "a generation started" notice does.

Stop is a message on a Redis pub/sub channel that every process listens to; the process
running the generation cancels it, and the pipeline keeps the partial answer. A heartbeat
key marks the generation alive; a reader that finds it gone without a final frame (the
process died) marks the answer interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat.models import Message
from chat.redis import redis_client
from chat.services.events import (
    Delta,
    Failed,
    Finished,
    Notice,
    Retrying,
    Started,
    TurnMode,
)
from chat.services.turns import run_turn
from chat.streaming import DeltaCoalescer

logger = logging.getLogger(__name__)

STOP_CHANNEL = "chat:gen-stop"
TERMINAL = frozenset({"finished", "failed", "stopped", "interrupted"})
STREAM_MAXLEN = 50_000  # frames, not tokens: far beyond any answer
STREAM_TTL = 3600  # seconds a finished stream stays readable
ALIVE_TTL = 15  # seconds without a heartbeat before readers call a generation dead
HEARTBEAT = 5

# Generations running in this process, by assistant message id, for stop requests.
_running: dict[int, asyncio.Task[None]] = {}
# Those asked to stop. Cancelling the task is not enough on its own: redis-py 8.1's asyncio
# client swallows a cancellation that lands during a command (a third of the time when
# measured), so the generation also checks this after each event.
_stopping: set[int] = set()
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


class _ClearMarker:
    """Delete a key only if it still holds our value (compare-and-delete, atomically)."""

    SCRIPT = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0"
    )

    def __call__(self, *, keys: list[str], args: list[str], client: Any) -> Any:
        return client.eval(self.SCRIPT, len(keys), *keys, *args)


_CLEAR_MARKER = _ClearMarker()


def stream_key(message_id: int) -> str:
    return f"chat:gen:{message_id}"


def alive_key(message_id: int) -> str:
    return f"chat:gen:{message_id}:alive"


def active_key(conversation_id: uuid.UUID | str) -> str:
    return f"chat:conv:{conversation_id}:active"


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    return f"conv-{conversation_id}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a generation has produced so far, and where to read on from."""

    message_id: int
    text: str
    last_id: str
    ended: dict[str, Any] | None


def _encode(event: object, **extra: object) -> bytes:
    kind = {
        Started: "started",
        Finished: "finished",
        Failed: "failed",
        Notice: "notice",
        Retrying: "retrying",
    }[type(event)]
    payload = dataclasses.asdict(event)  # type: ignore[call-overload]
    return orjson.dumps({"type": kind, **payload, **extra}, default=str)


async def generation_start(
    *,
    user_id: int,
    conversation_id: uuid.UUID | str,
    text: object = "",
    mode: TurnMode = "send",
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> Started:
    """Start a turn in the background; returns once the user's message is stored.

    Raises the pipeline's ChatError when the turn is refused (nothing is stored then).
    """
    _ensure_stop_listener()
    ready: asyncio.Future[Started] = asyncio.get_running_loop().create_future()
    turn = run_turn(
        user_id=user_id,
        conversation_id=conversation_id,
        text=text,
        mode=mode,
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    task = asyncio.create_task(_run(turn, ready))
    try:
        return await asyncio.shield(ready)
    except asyncio.CancelledError:
        # The caller went away; the generation goes on (it belongs to the conversation).
        raise
    finally:
        if not ready.done():
            task.cancel()


async def _run(turn: AsyncIterator[object], ready: asyncio.Future[Started]) -> None:
    try:
        started = await anext(turn)  # type: ignore[call-overload]
    except BaseException as exc:  # a refusal belongs to the caller
        await turn.aclose()  # type: ignore[attr-defined]
        if not ready.done():
            ready.set_exception(exc)
        return
    assert isinstance(started, Started)
    message_id = started.assistant_message_id
    redis = redis_client()
    key = stream_key(message_id)
    # A continuation streams into the same message: its old, finished stream goes first.
    await redis.delete(key)
    await _append(redis, key, message_id, _encode(started))
    # The marker names this run (a continuation reuses the message id), so only this run
    # clears it.
    marker = f"{message_id}:{uuid.uuid4().hex}"
    await redis.set(active_key(started.conversation_id), marker, ex=STREAM_TTL)
    _running[message_id] = asyncio.current_task()  # type: ignore[assignment]
    ready.set_result(started)
    await _announce(started)

    async def flush(text: str) -> None:
        await _append(redis, key, message_id, orjson.dumps({"type": "delta", "text": text}))

    async def end(frame: bytes) -> None:
        await _append(redis, key, message_id, frame, ends=(started.conversation_id, marker))

    coalescer = DeltaCoalescer(flush, settings.CHAT_FRAME_INTERVAL)
    heartbeat = asyncio.create_task(_heartbeat(redis, message_id))
    shown: list[str] = []
    try:
        async with contextlib.aclosing(turn):  # type: ignore[type-var]
            async for event in turn:
                if message_id in _stopping:
                    raise asyncio.CancelledError  # a stop whose cancellation was swallowed
                if isinstance(event, Delta):
                    shown.append(event.text)
                    await coalescer.add(event.text)
                elif isinstance(event, Notice | Retrying):
                    await coalescer.flush()
                    await _append(redis, key, message_id, _encode(event, message_id=message_id))
                else:
                    await coalescer.flush()
                    await end(_encode(event, model=started.model))
    except asyncio.CancelledError:
        coalescer.cancel()
        stopped = {
            "type": "stopped",
            "message_id": message_id,
            "content": "".join(shown),
            "model": started.model,
        }
        await end(orjson.dumps(stopped))
    except Exception:
        logger.exception("generation %s failed unexpectedly", message_id)
        coalescer.cancel()
        failed = {
            "type": "failed",
            "message_id": message_id,
            "content": "".join(shown),
            "status": "failed",
            "code": "provider_unavailable",
            "message": "Something went wrong on our side.",
        }
        await end(orjson.dumps(failed))
    finally:
        heartbeat.cancel()
        _running.pop(message_id, None)
        _stopping.discard(message_id)
        # Normally done with the final frame already; this covers an error on the way.
        await redis.delete(alive_key(message_id))
        await _CLEAR_MARKER(keys=[active_key(started.conversation_id)], args=[marker], client=redis)


async def _append(
    redis: Any,
    key: str,
    message_id: int,
    frame: bytes,
    *,
    ends: tuple[uuid.UUID, str] | None = None,
) -> None:
    """XADD one frame and keep the generation marked alive, in one round trip.

    The final frame (`ends` = the conversation id and this run's marker) also clears the
    conversation's active marker in the same round trip, so a reader that sees the end can
    start the next turn at once.
    """
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(key, {"e": frame}, maxlen=STREAM_MAXLEN, approximate=True)
        if ends is None:
            pipe.set(alive_key(message_id), 1, ex=ALIVE_TTL)
        else:
            pipe.delete(alive_key(message_id))
            _CLEAR_MARKER(keys=[active_key(ends[0])], args=[ends[1]], client=pipe)
        pipe.expire(key, STREAM_TTL)
        await pipe.execute()


async def _heartbeat(redis: Any, message_id: int) -> None:
    """Keep the alive key fresh through long silences (a slow first token, retry waits)."""
    while True:
        await asyncio.sleep(HEARTBEAT)
        await redis.set(alive_key(message_id), 1, ex=ALIVE_TTL)


async def _announce(started: Started) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(
        conversation_group(started.conversation_id),
        {"type": "generation.started", "message_id": started.assistant_message_id},
    )


async def generation_stop(*, message_id: int) -> None:
    """Ask whichever process runs this generation to stop it."""
    if not _stop_here(message_id):
        await redis_client().publish(STOP_CHANNEL, str(message_id))


def _stop_here(message_id: int) -> bool:
    """Stop a generation if this process runs it; False when it does not."""
    task = _running.get(message_id)
    if task is None:
        return False
    _stopping.add(message_id)
    task.cancel()
    return True


def _ensure_stop_listener() -> None:
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None or listener.done():
        _listeners[loop] = loop.create_task(_listen_for_stops())


async def _listen_for_stops() -> None:
    """One subscription per process: cancel the local generation a stop names."""
    while True:
        pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(STOP_CHANNEL)
            while True:
                # Short waits stay under the socket timeout; idle channels are normal.
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    continue
                with contextlib.suppress(ValueError, TypeError):
                    _stop_here(int(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("stop listener lost Redis; resubscribing", exc_info=True)
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


async def active_generation(conversation_id: uuid.UUID | str) -> int | None:
    """The assistant message id of the generation running in a conversation, if any."""
    value = await redis_client().get(active_key(conversation_id))
    return int(value.split(b":", 1)[0]) if value else None


async def generation_snapshot(message_id: int) -> Snapshot:
    """The text so far and the id to read on from (one XRANGE)."""
    entries = await redis_client().xrange(stream_key(message_id))
    parts: list[str] = []
    last_id = "0-0"
    ended = None
    for entry_id, fields in entries:
        last_id = entry_id.decode()
        event = orjson.loads(fields[b"e"])
        if event["type"] == "delta":
            parts.append(event["text"])
        elif event["type"] in TERMINAL:
            ended = event
    return Snapshot(message_id, "".join(parts), last_id, ended)


async def generation_follow(
    message_id: int, *, after: str = "0-0", block_ms: int = 2000
) -> AsyncIterator[dict[str, Any]]:
    """Yield a generation's frames after `after` until its final frame."""
    redis = redis_client()
    key = stream_key(message_id)
    while True:
        reply = await redis.xread({key: after}, block=block_ms, count=200)
        if not reply:
            if not await redis.exists(alive_key(message_id)):
                yield await _mark_dead(message_id)
                return
            continue
        for entry_id, fields in reply[0][1]:
            after = entry_id.decode()
            event = orjson.loads(fields[b"e"])
            yield event
            if event["type"] in TERMINAL:
                return


async def _mark_dead(message_id: int) -> dict[str, Any]:
    """The process running a generation died: keep what it saved, call it interrupted."""
    snapshot = await generation_snapshot(message_id)
    if snapshot.ended is not None:
        return snapshot.ended
    await sync_to_async(_interrupt)(message_id, snapshot.text)
    return {
        "type": "interrupted",
        "message_id": message_id,
        "content": snapshot.text,
        "status": "interrupted",
        "code": "stream_interrupted",
        "message": "The server handling this answer went away; you can continue it.",
    }


def _interrupt(message_id: int, text: str) -> None:
    fields = {"content": text} if text else {}  # else keep what was saved on the way
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED,
        error_code="stream_interrupted",
        error_message="The server handling this answer went away.",
        **fields,
    )
