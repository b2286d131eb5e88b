"""Charts drawn on the server as SVG geometry: no JavaScript, no inline styles.

Functions here turn numbers into rectangles, ticks and labels; templates only place them
(budgets/_chart.html). Colours are SVG `fill` attributes, which the CSP allows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
OTHER_COLOUR = "#8c8c8c"
MAX_SERIES = len(PALETTE)


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    label: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the SVG template draws."""

    title: str
    description: str
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    rects: list[Rect] = field(default_factory=list)
    grid: list[Label] = field(default_factory=list)  # y of a grid line, and its value
    x_labels: list[Label] = field(default_factory=list)
    y_labels: list[Label] = field(default_factory=list)  # category names of horizontal bars
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, name)
    empty: bool = False


def nice_ceiling(value: float) -> tuple[float, float]:
    """(top of the axis, step) with 4 or 5 steps of 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def colours_for(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def stacked_columns(
    *,
    title: str,
    days: Sequence[dt.date],
    series: dict[str, list[float]],
    fmt: Callable[[float], str],
    width: int = 720,
    height: int = 260,
) -> Chart:
    """One column per day, stacked by series (model), with a value axis on the left."""
    left, top, right, bottom = 64.0, 12.0, width - 8.0, height - 28.0
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    peak = max(totals, default=0)
    description = f"{title}: " + (
        f"{len(days)} days, highest {fmt(peak)} on {days[totals.index(peak)]:%b %-d}."
        if peak
        else "no use in this period."
    )
    axis_top, step = nice_ceiling(peak)
    chart = Chart(title, description, width, height, left, top, right, bottom, empty=not peak)
    colours = colours_for(list(series))
    chart.legend.extend((colours[name], name) for name in series)
    scale = (bottom - top) / axis_top
    ticks = round(axis_top / step)
    for i in range(ticks + 1):
        value = step * i
        chart.grid.append(Label(left, round(bottom - value * scale, 2), fmt(value)))
    slot = (right - left) / max(1, len(days))
    bar_width = max(1.0, slot * 0.7)
    label_every = max(1, math.ceil(len(days) / 10))
    for i, day in enumerate(days):
        x = round(left + slot * i + (slot - bar_width) / 2, 2)
        y = bottom
        for name, values in series.items():
            value = values[i]
            if value <= 0:
                continue
            h = value * scale
            y -= h
            label = f"{day:%b %-d}, {name}: {fmt(value)}"
            chart.rects.append(
                Rect(x, round(y, 2), round(bar_width, 2), round(h, 2), colours[name], label)
            )
        if i % label_every == 0 or i == len(days) - 1:
            chart.x_labels.append(Label(round(x + bar_width / 2, 2), bottom + 16, f"{day:%b %-d}"))
    return chart


def horizontal_bars(
    *,
    title: str,
    items: Sequence[tuple[str, float]],
    fmt: Callable[[float], str],
    width: int = 720,
    row: int = 24,
) -> Chart:
    """One bar per item (e.g. the top users today), largest first."""
    height = max(60, int(row * len(items) + 36))
    left, top, right, bottom = 140.0, 8.0, width - 90.0, height - 24.0
    peak = max((value for _, value in items), default=0)
    description = f"{title}: " + (
        ", ".join(f"{name} {fmt(value)}" for name, value in items) if items else "no use yet."
    )
    chart = Chart(title, description, width, height, left, top, right, bottom, empty=not peak)
    axis_top, _ = nice_ceiling(peak)
    scale = (right - left) / axis_top
    for i, (name, value) in enumerate(items):
        y = top + i * row + 3
        w = max(1.0, value * scale) if value > 0 else 0.0
        chart.rects.append(Rect(left, y, round(w, 2), row - 6, PALETTE[0], f"{name}: {fmt(value)}"))
        chart.y_labels.append(Label(left - 8, y + (row - 6) / 2 + 4, name[:20]))
        chart.x_labels.append(Label(round(left + w + 6, 2), y + (row - 6) / 2 + 4, fmt(value)))
    return chart


def format_tokens(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:.0f}"


def format_usd_micros(value: float) -> str:
    usd = value / 1_000_000
    if usd == 0:
        return "$0"
    if usd < 0.01:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"
