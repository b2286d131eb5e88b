"""The project's errors: one root, a small tree, stable codes for the APIs.

    ChatError                      message fit for a person, code for the wire, extra
    +-- InvalidInput               bad request from a door (empty, oversized, malformed)
    +-- NotFound                   a conversation or model that is not there (or not yours)
    +-- ProviderError              anything a provider call ended with
        +-- RateLimited            429 from the provider
        +-- Overloaded             529 / overloaded_error
        +-- Unavailable            5xx, connection failures
        +-- ProviderTimeout        connect, first-token or idle timeout
        +-- Rejected               400/404/413/422: the provider refused the request
        |   +-- ContextTooLong     the prompt does not fit the model's window
        +-- AuthenticationFailed   401/403: our key is wrong or lacks permission
        +-- StreamInterrupted      the stream broke after it started

Doors catch ChatError and show `message`; nothing else reaches a user.
"""

from __future__ import annotations

from typing import Any, Final

# Every code used on the wire, listed once.
CODES: Final = frozenset(
    {
        "invalid_request",
        "message_empty",
        "message_too_long",
        "not_found",
        "model_unavailable",
        "busy",
        "rate_limited",
        "provider_overloaded",
        "provider_unavailable",
        "provider_timeout",
        "provider_rejected",
        "context_too_long",
        "provider_auth_failed",
        "stream_interrupted",
    }
)


class ChatError(Exception):
    """Root of the project's errors: a message for people and a stable code."""

    code: str = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        assert self.code in CODES, f"unknown error code {self.code!r}"
        self.extra = extra


class InvalidInput(ChatError):
    """A door received something it cannot accept."""


class NotFound(ChatError):
    """The thing asked for does not exist or belongs to someone else."""

    code = "not_found"


class ProviderError(ChatError):
    """A provider call failed."""

    code = "provider_unavailable"
    retryable = False


class RateLimited(ProviderError):
    """The provider rate-limited us (429)."""

    code = "rate_limited"
    retryable = True


class Overloaded(ProviderError):
    """The provider is overloaded (529)."""

    code = "provider_overloaded"
    retryable = True


class Unavailable(ProviderError):
    """The provider answered 5xx or could not be reached."""

    code = "provider_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    code = "provider_timeout"
    retryable = True


class Rejected(ProviderError):
    """The provider refused the request as invalid."""

    code = "provider_rejected"


class ContextTooLong(Rejected):
    """The prompt does not fit the model's context window."""

    code = "context_too_long"


class AuthenticationFailed(ProviderError):
    """The provider refused our credentials."""

    code = "provider_auth_failed"


class StreamInterrupted(ProviderError):
    """The stream broke after it had started."""

    code = "stream_interrupted"
