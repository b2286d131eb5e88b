"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Django must be set up before anything imports models (the routing does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.api.body_limit import API_PREFIX, BodyLimitMiddleware  # noqa: E402
from chat.api.middleware import ApiHandler  # noqa: E402
from chat.routing import api_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402
from chatsite.sqlite_wal import sqlite_wal_keep  # noqa: E402

sqlite_wal_keep()

browser_websocket = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
)
# Programs authenticate with an API key and send no cookies: no session, no origin check.
api_websocket = URLRouter(api_websocket_urlpatterns)


# The API paths get Django without the browser's middleware (chat/api/middleware.py).
django_api_app = ApiHandler()


async def http(scope, receive, send):  # type: ignore[no-untyped-def]
    app = django_api_app if scope["path"].startswith(API_PREFIX) else django_asgi_app
    return await app(scope, receive, send)


async def websocket(scope, receive, send):  # type: ignore[no-untyped-def]
    app = api_websocket if scope["path"].startswith("/ws/v1/") else browser_websocket
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(http),
        "websocket": websocket,
    }
)
