"""The Anthropic emulation refuses what the real API refuses, in Anthropic's error shape."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx2
import pytest

from sandbox.server import SandboxServer
from tests.sandbox.support import ANTHROPIC_MODEL

USER = [{"role": "user", "content": "Hello"}]
HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[SandboxServer]:
    """A sandbox whose models all have a 1000-token context window."""
    with SandboxServer(tokens_per_second=2000.0, ttft_ms=0, max_context=1000) as server:
        yield server


def _post(sandbox: SandboxServer, body: object | bytes, headers: dict[str, str]) -> httpx2.Response:
    content = body if isinstance(body, bytes) else None
    json = None if isinstance(body, bytes) else body
    return httpx2.post(
        sandbox.base_url + "/v1/messages", content=content, json=json, headers=headers
    )


def _body(**extra: object) -> dict[str, object]:
    return {"model": ANTHROPIC_MODEL, "max_tokens": 20, "messages": USER, **extra}


def test_bearer_and_x_api_key_are_both_accepted(sandbox: SandboxServer) -> None:
    bearer = _post(sandbox, _body(), {**HEADERS, "authorization": "Bearer sk-one"})
    x_api_key = _post(sandbox, _body(), {**HEADERS, "x-api-key": "sk-two"})

    assert bearer.status_code == 200
    assert x_api_key.status_code == 200


def test_missing_key_is_refused_with_authentication_error(sandbox: SandboxServer) -> None:
    response = _post(sandbox, _body(), HEADERS)

    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"].startswith("req_")
    assert response.headers["request-id"] == body["request_id"]


def test_sdk_maps_missing_key_to_authentication_error(sandbox: SandboxServer) -> None:
    client = anthropic.Anthropic(api_key="sk", base_url=sandbox.base_url, max_retries=0)

    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=20,
            messages=USER,
            extra_headers={"Authorization": anthropic.Omit()},
        )


def test_missing_anthropic_version_is_refused(sandbox: SandboxServer) -> None:
    response = _post(sandbox, _body(), {"x-api-key": "sk"})

    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]


def test_missing_max_tokens_is_refused(sandbox: SandboxServer) -> None:
    # The SDK refuses to send this itself, so it goes over plain HTTP.
    body = {"model": ANTHROPIC_MODEL, "messages": USER}
    response = _post(sandbox, body, {**HEADERS, "authorization": "Bearer sk"})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


def test_max_tokens_below_one_is_refused(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="greater than or equal to 1"):
        claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=0, messages=USER)


def test_max_tokens_above_the_model_cap_is_refused(claude: anthropic.Anthropic) -> None:
    # Streamed: the SDK itself refuses a non-streamed request this large.
    with (
        pytest.raises(anthropic.BadRequestError, match="64001 > 64000"),
        claude.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64_001, messages=USER),
    ):
        pass


def test_more_than_four_cache_breakpoints_are_refused(claude: anthropic.Anthropic) -> None:
    marked = {"type": "ephemeral"}
    system = [{"type": "text", "text": f"part {i}", "cache_control": marked} for i in range(3)]
    content = [{"type": "text", "text": f"q {i}", "cache_control": marked} for i in range(2)]

    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=20,
            system=system,
            messages=[{"role": "user", "content": content}],
        )

    assert caught.value.body["error"]["message"] == (
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )


def test_prompt_beyond_the_context_window_is_refused(small_sandbox: SandboxServer) -> None:
    client = anthropic.Anthropic(api_key="sk", base_url=small_sandbox.base_url, max_retries=0)
    long = [{"role": "user", "content": "word " * 1200}]

    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=long)

    message = caught.value.body["error"]["message"]
    assert message.startswith("prompt is too long: ")
    assert message.endswith(" tokens > 1000 maximum")


def test_prompt_plus_max_tokens_beyond_the_window_is_refused(small_sandbox: SandboxServer) -> None:
    client = anthropic.Anthropic(api_key="sk", base_url=small_sandbox.base_url, max_retries=0)

    with pytest.raises(anthropic.BadRequestError, match="exceed context limit"):
        client.messages.create(model=ANTHROPIC_MODEL, max_tokens=999, messages=USER)
    fits = client.messages.create(model=ANTHROPIC_MODEL, max_tokens=900, messages=USER)

    assert fits.stop_reason == "end_turn"


def test_unknown_model_is_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="gpt-4o", max_tokens=20, messages=USER)

    assert caught.value.body["error"] == {"type": "not_found_error", "message": "model: gpt-4o"}


def test_any_claude_model_id_is_accepted(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-future-9", max_tokens=20, messages=USER)

    assert message.model == "claude-future-9"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_malformed_json_is_a_400_in_anthropic_shape(sandbox: SandboxServer, raw: bytes) -> None:
    response = _post(sandbox, raw, {**HEADERS, "x-api-key": "sk"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_count_tokens_validates_like_messages(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="nope", messages=USER)
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        claude.messages.count_tokens(model=ANTHROPIC_MODEL, messages=[])
