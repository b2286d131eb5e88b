"""Which models the service offers, and which provider serves each.

The provider-layer issue turns this into a priced catalog editable in admin; here it
holds what the pipeline needs: the provider, the label and the size limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from chat import errors
from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import Provider, ProviderName
from chat.providers.openai import OpenAIProvider


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    provider: ProviderName
    label: str
    context_window: int
    max_output: int


MODELS: tuple[ModelInfo, ...] = (
    ModelInfo("claude-sonnet-4-6", "anthropic", "Claude Sonnet 4.6", 200_000, 64_000),
    ModelInfo("claude-haiku-4-5", "anthropic", "Claude Haiku 4.5", 200_000, 64_000),
    ModelInfo("claude-opus-4-6", "anthropic", "Claude Opus 4.6", 200_000, 32_000),
    ModelInfo("gpt-5-mini", "openai", "GPT-5 mini", 400_000, 128_000),
    ModelInfo("gpt-5", "openai", "GPT-5", 400_000, 128_000),
    ModelInfo("gpt-4.1-mini", "openai", "GPT-4.1 mini", 1_047_576, 32_768),
)
_BY_ID = {model.id: model for model in MODELS}
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
    """Models whose provider is configured, in catalog order."""
    return [model for model in MODELS if provider_configured(model.provider)]


def default_model() -> ModelInfo | None:
    models = available_models()
    return models[0] if models else None


def resolve(model_id: str) -> tuple[ModelInfo, Provider]:
    """The model and its provider, or a clear refusal."""
    model = _BY_ID.get(model_id)
    if model is None:
        raise errors.NotFound(f"Unknown model {model_id!r}.", code="model_unavailable")
    if not provider_configured(model.provider):
        raise errors.InvalidInput(
            f"{model.label} is not available: its provider is not configured "
            f"(set {model.provider.upper()}_API_KEY).",
            code="model_unavailable",
        )
    return model, _PROVIDERS[model.provider]
