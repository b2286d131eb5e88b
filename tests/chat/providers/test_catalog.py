"""The catalog: what is offered, at what price, and the exact cost of a call."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import pytest

from chat import errors
from chat.models import ModelPrice
from chat.providers import catalog, pricing
from chat.providers.base import Usage
from chat.providers.specs import MODELS, spec

pytestmark = pytest.mark.django_db


def test_claude_ids_are_ones_the_installed_sdk_names():
    known = set(anthropic.types.Model.__args__[0].__args__)
    claude = [m.id for m in MODELS if m.provider == "anthropic"]
    assert claude
    assert set(claude) <= known


def test_claude_cache_prices_follow_from_the_input_price():
    for model in MODELS:
        if model.provider != "anthropic" or model.prices is None:
            continue
        p = model.prices
        assert (p.cache_write_5m, p.cache_write_1h, p.cache_read) == (
            p.input * Decimal("1.25"),
            p.input * 2,
            p.input * Decimal("0.1"),
        )


def test_cost_of_a_million_tokens_each_is_the_sum_of_the_prices():
    sonnet = spec("claude-sonnet-4-6")
    usage = Usage(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    # $3 in + $3.75 write + $0.30 read + $15 out = $22.05
    assert pricing.cost_micros(sonnet, usage) == 22_050_000
    # The 1-hour write costs 2x input: $3 + $6 + $0.30 + $15
    assert pricing.cost_micros(sonnet, usage, cache_ttl="1h") == 24_300_000


def test_openai_cached_input_is_billed_at_the_cached_price_and_the_rest_as_input():
    gpt = spec("gpt-5")
    # 1,000 prompt tokens of which 800 cached, 100 out: 200 * 1.25 + 800 * 0.125 + 100 * 10
    assert pricing.cost_micros(gpt, Usage(200, 0, 800, 100)) == 250 + 100 + 1000


def test_cost_rounds_half_up_once_at_the_end():
    mini = spec("gpt-4o-mini")  # $0.15 in, $0.075 cached
    # 3 * 0.15 + 1 * 0.075 = 0.525 micro-dollars: rounding each part would give 0.
    assert pricing.cost_micros(mini, Usage(input_tokens=3, cache_read_tokens=1)) == 1
    nano = spec("gpt-5-nano")  # $0.05 in: 10 tokens are exactly half a micro-dollar
    assert pricing.cost_micros(nano, Usage(input_tokens=10)) == 1
    assert pricing.cost_micros(nano, Usage(input_tokens=9)) == 0


def test_a_provider_with_neither_key_nor_base_url_is_not_offered(settings):
    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = "sk-ant", ""
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    offered = catalog.available_models()
    assert offered
    assert {m.provider for m in offered} == {"anthropic"}
    with pytest.raises(errors.InvalidInput) as refused:
        catalog.resolve("gpt-5")
    assert refused.value.code == "model_unavailable"
    settings.OPENAI_BASE_URL = "http://localhost:11434/v1"  # a local OpenAI-compatible server
    assert "gpt-5" in {m.id for m in catalog.available_models()}


def test_a_model_without_published_prices_is_offered_once_priced(providers):
    assert "claude-opus-5-5" not in {m.id for m in catalog.available_models()}
    with pytest.raises(errors.InvalidInput):
        catalog.resolve("claude-opus-5-5")
    ModelPrice.objects.create(
        model_id="claude-opus-5-5",
        input=Decimal(5),
        output=Decimal(25),
        cache_write_5m=Decimal("6.25"),
        cache_write_1h=Decimal(10),
        cache_read=Decimal("0.5"),
    )
    pricing.prices_invalidate()
    model, _ = catalog.resolve("claude-opus-5-5")
    assert model.prices.output == 25


def test_a_price_set_in_admin_takes_effect_on_the_next_turn(admin_client, providers):
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    before = catalog.cost_micros(catalog.resolve("gpt-5-mini")[0], usage)
    assert before == 250_000 + 2_000_000
    response = admin_client.post(
        "/admin/chat/modelprice/add/",
        {"model_id": "gpt-5-mini", "output": "3.000000", "note": "negotiated, 2026-11"},
    )
    assert response.status_code == 302, response.content
    model, _ = catalog.resolve("gpt-5-mini")
    # Blank fields keep the catalog's price; the output price is admin's.
    assert (model.prices.input, model.prices.output) == (Decimal("0.25"), Decimal(3))
    assert catalog.cost_micros(model, usage) == 250_000 + 3_000_000


def test_the_price_snapshot_costs_no_query_until_it_is_stale(settings, providers):
    settings.LLM_PRICE_REFRESH_SECONDS = 3600
    catalog.resolve("gpt-5")  # loads the snapshot
    # Another process changes a price: this one keeps its snapshot (no query per lookup)...
    ModelPrice.objects.create(model_id="gpt-5", output=Decimal(11))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        for _ in range(100):
            assert catalog.resolve("gpt-5")[0].prices.output == 10
    assert len(queries) == 0
    # ...until the refresh interval has passed.
    settings.LLM_PRICE_REFRESH_SECONDS = 0
    assert catalog.resolve("gpt-5")[0].prices.output == 11


@pytest.mark.django_db(transaction=True)
async def test_an_async_turn_refreshes_prices_with_one_awaited_lookup(settings, providers):
    from asgiref.sync import sync_to_async

    await sync_to_async(ModelPrice.objects.create)(model_id="gpt-5", output=Decimal(12))
    await catalog.prices_refresh()
    settings.LLM_PRICE_REFRESH_SECONDS = 3600
    await catalog.prices_refresh()
    model, _ = catalog.resolve("gpt-5")  # no query from the event loop: the snapshot is fresh
    assert model.prices.output == 12
