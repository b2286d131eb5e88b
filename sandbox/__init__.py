"""A standalone emulator of the Anthropic Messages and OpenAI Chat Completions APIs.

Run it with `python -m sandbox --port 8788`; in tests use `sandbox.server.SandboxServer`.
It imports nothing from the Django project.

Endpoints: POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/chat/completions,
GET /v1/models[/{id}] (Anthropic's shape when `anthropic-version` is sent, else OpenAI's),
the Message Batches API under /v1/messages/batches (sandbox.batches), GET /health;
with `--trace` only, GET/DELETE /sandbox/trace (see sandbox.trace).
Directives, in the last user message or as a request header:
- `sandbox-reply:N` / `x-sandbox-reply-tokens: N`: a reply exactly N tokens long;
- `sandbox-fault:KIND` / `x-sandbox-fault: KIND`: a fault (see sandbox.faults).
"""
