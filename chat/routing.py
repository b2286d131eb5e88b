from __future__ import annotations

from django.urls import path

from chat import api_consumers, consumers

# The browser's sockets: a signed-in session, same-origin only.
websocket_urlpatterns = [
    path("ws/chat/<str:conversation_id>/", consumers.ChatConsumer.as_asgi()),
]

# The JSON API for programs: an API key on the handshake (no cookies, so no origin check).
api_websocket_urlpatterns = [
    path("ws/v1/chat/", api_consumers.ApiChatConsumer.as_asgi()),
]
