from __future__ import annotations

import asyncio

from chat.streaming import DeltaCoalescer


async def test_first_delta_goes_out_at_once_and_the_rest_are_coalesced():
    frames: list[str] = []

    async def flush(text: str) -> None:
        frames.append(text)

    coalescer = DeltaCoalescer(flush, interval=0.05)
    await coalescer.add("Hel")
    assert frames == ["Hel"]
    for piece in ["lo", ",", " wor", "ld"]:
        await coalescer.add(piece)
    assert frames == ["Hel"]  # buffered until the timer fires
    await asyncio.sleep(0.08)
    assert frames == ["Hel", "lo, world"]


async def test_flush_sends_what_is_buffered_and_cancels_the_timer():
    frames: list[str] = []

    async def flush(text: str) -> None:
        frames.append(text)

    coalescer = DeltaCoalescer(flush, interval=10)
    await coalescer.add("a")
    await coalescer.add("b")
    await coalescer.flush()
    assert frames == ["a", "b"]
    await coalescer.flush()
    assert frames == ["a", "b"]
