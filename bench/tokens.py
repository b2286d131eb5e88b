"""Token-counting throughput: tiktoken (GPT, exact) and the Claude estimate, 1 KB to 1 MB.

    .venv/bin/python bench/tokens.py [--runs 3]

Prompts are a deterministic mix of English prose, code and a little non-ASCII text. Each size is
counted `--runs` times (after one warm-up), single-threaded; tokens/s is the tokens of the prompt
divided by wall time (perf_counter; the work is pure CPU). The Claude estimate counts the same
o200k tokens and scales them, so compare the two by MB/s: its tokens/s is of estimated tokens.
"""

from __future__ import annotations

import argparse
import time

from _django import setup

SIZES = {"1 KB": 1_000, "100 KB": 100_000, "1 MB": 1_000_000}
_CORPUS = (
    "The budget resets at midnight in the configured time zone, and reservations expire on "
    "their own when a worker crashes. ",
    "def reserve(user, tokens):\n    if tokens > remaining(user):\n        raise Refused()\n",
    "Prompt caching makes the second turn of a long conversation much cheaper. ",
    "Zürich, São Paulo, 東京 and Kraków each have a café on the corner — naïvely priced. ",
    "SELECT id, model, cost_micros FROM usage WHERE user_id = 42 ORDER BY created_at; ",
)


def prompt(size: int) -> str:
    text, i = [], 0
    length = 0
    while length < size:
        piece = _CORPUS[i % len(_CORPUS)] + f"[{i}] "
        text.append(piece)
        length += len(piece.encode())
        i += 1
    return "".join(text).encode()[:size].decode(errors="ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup()
    from chat.providers import tokens
    from chat.providers.base import ChatMessage, ChatRequest
    from chat.providers.specs import spec

    gpt, claude = spec("gpt-5-mini"), spec("claude-sonnet-4-6")
    counters = {
        "tiktoken o200k (GPT, exact)": lambda r: tokens.local_prompt_tokens(gpt, r),
        "Claude estimate (o200k x1.15)": lambda r: tokens.local_prompt_tokens(claude, r),
    }
    tokens.encoding()  # load the rank files outside the timing
    print(
        f"{'prompt':>7}  {'counter':<30} {'tokens':>9}  {'runs (ms)':<24} "
        f"{'tokens/s (best)':>16} {'MB/s':>6}"
    )
    for label, size in SIZES.items():
        text = prompt(size)
        request = ChatRequest("m", (ChatMessage("user", text),), max_tokens=1)
        for name, count in counters.items():
            count(request)  # warm-up
            times, n = [], 0
            for _ in range(args.runs):
                start = time.perf_counter()
                n = count(request)
                times.append(time.perf_counter() - start)
            runs = ", ".join(f"{t * 1000:.2f}" for t in times)
            best = min(times)
            mb_s = len(text.encode()) / 1e6 / best
            print(f"{label:>7}  {name:<30} {n:>9,}  {runs:<24} {n / best:>16,.0f} {mb_s:>6.1f}")


if __name__ == "__main__":
    main()
