"""The API paths' Django: the site's response headers and host check, on the event loop.

Under ASGI Django runs each of a MiddlewareMixin middleware's hooks in a worker thread: two
thread hand-offs per middleware and request. With the site's ten that was ~8 ms of the
OpenAI-compatible door's time to first token (bench/README.md). The API paths (/v1/, routed
here by chatsite/asgi.py) need none of the browser's middleware: no session, CSRF cookie,
login, messages, static files or htmx. The ones they keep (the security headers, the host
and user-agent checks, X-Frame-Options, the CSP header) do no I/O, so their hooks run
unchanged, inline on the loop (settings.CHAT_API_MIDDLEWARE, in the site's order).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction
from csp import middleware as csp
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, security
from django.utils.module_loading import import_string

UNSUPPORTED_HOOKS = ("process_view", "process_exception", "process_template_response")


class OnLoop:
    """A MiddlewareMixin whose hooks do no I/O: called inline, not in a thread, when async."""

    get_response: Any

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(OnLoop, security.SecurityMiddleware):
    """Django's SecurityMiddleware, on the loop."""


class CommonMiddleware(OnLoop, common.CommonMiddleware):
    """Django's CommonMiddleware (ALLOWED_HOSTS, Content-Length), on the loop."""


class XFrameOptionsMiddleware(OnLoop, clickjacking.XFrameOptionsMiddleware):
    """Django's XFrameOptionsMiddleware, on the loop."""


class CSPMiddleware(OnLoop, csp.CSPMiddleware):
    """django-csp's CSPMiddleware, on the loop."""


class ApiHandler(ASGIHandler):
    """Django's ASGI handler with settings.CHAT_API_MIDDLEWARE instead of MIDDLEWARE."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler = convert_exception_to_response(self._get_response_async)
        for path in reversed(settings.CHAT_API_MIDDLEWARE):
            instance = import_string(path)(handler)
            if not iscoroutinefunction(instance) or any(
                hasattr(instance, hook) for hook in UNSUPPORTED_HOOKS
            ):
                raise ImproperlyConfigured(
                    f"{path} cannot be in CHAT_API_MIDDLEWARE: it must be async and have no "
                    f"{', '.join(UNSUPPORTED_HOOKS)}."
                )
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler
