"""The doors for programs: the OpenAI-compatible HTTP API and the JSON websocket API.

Both authenticate with an API key (chat.services.api_keys), drive the one turn pipeline
(chat.services.turns.run_turn) and only translate its events; docs/api.md describes them.
"""
