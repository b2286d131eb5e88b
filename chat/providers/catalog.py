"""Which models the service offers, at what price, and which provider serves each.

The table (sizes, tokenizer, caching floor, published prices) is in chat/providers/specs.py;
admin's price overrides are applied by chat/providers/pricing.py. A model is offered when its
provider is configured (an API key or a base URL) and it has prices.
"""

from __future__ import annotations

from django.conf import settings

from chat import errors
from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import Provider, ProviderName
from chat.providers.openai import OpenAIProvider
from chat.providers.pricing import cost_micros, priced, prices_refresh
from chat.providers.specs import BY_ID, MODELS, ModelInfo, Prices

__all__ = [
    "MODELS",
    "ModelInfo",
    "Prices",
    "available_models",
    "cost_micros",
    "default_model",
    "prices_refresh",
    "provider_configured",
    "provider_is_sandbox",
    "resolve",
]

_PROVIDERS: dict[ProviderName, Provider] = {
    "anthropic": AnthropicProvider(),
    "openai": OpenAIProvider(),
}


def provider_configured(name: ProviderName) -> bool:
    """A provider is offered when it has an API key or a base URL."""
    if name == "anthropic":
        return bool(settings.ANTHROPIC_API_KEY or settings.ANTHROPIC_BASE_URL)
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def provider_is_sandbox(name: ProviderName) -> bool:
    """True when the provider's base URL is the local sandbox started by `make run`."""
    url = settings.ANTHROPIC_BASE_URL if name == "anthropic" else settings.OPENAI_BASE_URL
    return bool(settings.LLM_SANDBOX_URL) and url.startswith(settings.LLM_SANDBOX_URL)


def available_models() -> list[ModelInfo]:
    """Models whose provider is configured and whose prices are known, in catalog order."""
    offered = (priced(model) for model in MODELS if provider_configured(model.provider))
    return [model for model in offered if model.prices is not None]


def default_model() -> ModelInfo | None:
    """The first available model, or None when no provider is configured."""
    models = available_models()
    return models[0] if models else None


def resolve(model_id: str) -> tuple[ModelInfo, Provider]:
    """The model (with its effective prices) and its provider, or a clear refusal."""
    model = BY_ID.get(model_id)
    if model is None:
        raise errors.NotFound(f"Unknown model {model_id!r}.", code="model_unavailable")
    if not provider_configured(model.provider):
        raise errors.InvalidInput(
            f"{model.label} is not available: its provider is not configured "
            f"(set {model.provider.upper()}_API_KEY).",
            code="model_unavailable",
        )
    model = priced(model)
    if model.prices is None:
        raise errors.InvalidInput(
            f"{model.label} is not available yet: it has no price (an admin can set one).",
            code="model_unavailable",
        )
    return model, _PROVIDERS[model.provider]
