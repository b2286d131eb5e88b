"""A standalone emulator of the Anthropic Messages and OpenAI Chat Completions APIs.

Run it with `python -m sandbox --port 8788`; in tests use `sandbox.server.SandboxServer`.
It imports nothing from the Django project.
"""
