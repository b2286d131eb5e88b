"""The project's errors: one root, a small tree, stable codes for the APIs.

    ChatError                      message fit for a person, code for the wire, extra
    +-- InvalidInput               bad request from a door (empty, oversized, malformed)
    +-- NotFound                   a conversation or model that is not there (or not yours)
    +-- ProviderError              anything a provider call ended with; status, retry_after, usage
        +-- RateLimited            429 / rate_limit_error
        +-- Overloaded             529 / overloaded_error
        +-- Unavailable            408, 5xx, connection failures
        +-- ProviderTimeout        first-token or idle timeout, or the retry deadline
        +-- Rejected               400/404/413/422: the provider refused the request
        |   +-- ContextTooLong     the prompt does not fit the model's window
        +-- AuthenticationFailed   401/403: our key is wrong or lacks permission
        +-- StreamInterrupted      the connection broke after the answer had started

A ProviderError raised after tokens streamed carries `usage`: what the call used so far, with
output tokens the provider did not report counted from the streamed text. Doors catch ChatError
and show `message`; nothing else reaches a user.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from chat.providers.base import Usage

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
        # budgets: refusals before any provider call
        "budget_exceeded",
        "too_many_streams",
        "budget_unavailable",
        "model_not_allowed",
        "not_a_member",
        # the APIs for programs (docs/api.md)
        "invalid_api_key",
        "model_not_found",
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

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        usage: Usage | None = None,
        retryable: bool | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message, code=code, **extra)
        self.status = status
        self.retry_after = retry_after
        self.usage = usage
        if retryable is not None:
            self.retryable = retryable

    def but(self, **changes: Any) -> ProviderError:
        """A copy with some attributes changed (message, usage, retryable...)."""
        clone = copy.copy(self)
        for name, value in changes.items():
            setattr(clone, name, value)
        clone.args = (clone.message,)
        return clone


class RateLimited(ProviderError):
    """The provider rate-limited us (429)."""

    code = "rate_limited"
    retryable = True


class Overloaded(ProviderError):
    """The provider is overloaded (529)."""

    code = "provider_overloaded"
    retryable = True


class Unavailable(ProviderError):
    """The provider answered 408 or 5xx, or could not be reached."""

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


class Refused(ChatError):
    """The budget or a rate limit refused the turn before any provider call."""

    code = "budget_exceeded"
