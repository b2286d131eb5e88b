"""Documents page: upload (htmx), the list with live progress, delete with confirmation."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from chat import errors
from chat.models import Document
from chat.services import documents as documents_service
from chat.services.extraction import clean_name

# Room for the form's other fields and the multipart boundaries around the file.
MULTIPART_SLACK_BYTES = 64 * 1024


class SizeLimitHandler(FileUploadHandler):
    """Stops reading a file once it passes the limit, so an oversized upload is never stored."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large: str | None = None

    def new_file(self, field_name: str, file_name: str, *args: object, **kwargs: object) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = self.file_name
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _context(request: HttpRequest, *, error: str = "") -> dict[str, object]:
    return {
        "documents": documents_service.document_list(user_id=request.user.id),
        "error": error,
        "max_bytes": settings.CHAT_DOCUMENT_MAX_BYTES,
        "max_chars": settings.CHAT_DOCUMENT_MAX_CHARS,
    }


def _too_large_message(name: str | None) -> str:
    limit = settings.CHAT_DOCUMENT_MAX_BYTES
    what = f"“{clean_name(name)}”" if name else "This upload"
    return f"{what} is larger than the limit of {limit / (1024 * 1024):g} MB."


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # malformed: left to Django's parser and the per-file limit


def _page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    """The whole page, or for htmx the upload section (htmx swaps 2xx answers only)."""
    context = _context(request, error=error)
    if request.htmx:
        return render(request, "chat/documents.html#documents", context)
    return render(request, "chat/documents.html", context, status=status)


@csrf_exempt  # checked below, once the size limit is in place (Django's documented pattern)
@login_required
@require_http_methods(["GET", "POST"])
def documents(request: HttpRequest) -> HttpResponse:
    """The user's documents; a POST uploads one, refused early when it is too large."""
    if request.method == "POST":
        if _declared_length(request) > settings.CHAT_DOCUMENT_MAX_BYTES + MULTIPART_SLACK_BYTES:
            # Refused by its declared length, before the body is parsed or stored.
            return _page(request, error=_too_large_message(None), status=413)
        limiter = SizeLimitHandler(request, settings.CHAT_DOCUMENT_MAX_BYTES)
        request.upload_handlers.insert(0, limiter)
        return csrf_protect(_upload)(request, limiter)
    return _page(request)


def _upload(request: HttpRequest, limiter: SizeLimitHandler) -> HttpResponse:
    upload = request.FILES.get("file")
    if limiter.too_large is not None:
        return _page(request, error=_too_large_message(limiter.too_large), status=413)
    if upload is None:
        return _page(request, error="Choose a file to upload.", status=400)
    try:
        document = documents_service.document_upload(
            user_id=request.user.id, name=upload.name or "", data=upload.read()
        )
    except errors.ChatError as exc:
        return _page(request, error=exc.message, status=400)
    if not request.htmx:
        messages.success(request, f"Uploaded “{document.name}”; its text is being read.")
        return redirect("chat:documents")
    return _page(request)


@login_required
@require_GET
def document_row(request: HttpRequest, document_id: str) -> HttpResponse:
    """One document's row: polled by htmx while it is processed (the answer stops the polling)."""
    document = _owned(request, document_id)
    context = {"document": document, "max_chars": settings.CHAT_DOCUMENT_MAX_CHARS}
    return render(request, "chat/documents.html#document-row", context)


@login_required
@require_http_methods(["GET", "POST"])
def document_delete(request: HttpRequest, document_id: str) -> HttpResponse:
    """Ask for confirmation, then delete the document."""
    document = _owned(request, document_id)
    if request.method == "POST":
        documents_service.document_delete(user_id=request.user.id, document_id=document.pk)
        messages.success(request, f"Deleted “{document.name}”.")
        return redirect("chat:documents")
    return render(request, "chat/documents_confirm_delete.html", {"document": document})


def _owned(request: HttpRequest, document_id: str) -> Document:
    try:
        return documents_service.document_get_for_user(
            user_id=request.user.id, document_id=document_id
        )
    except errors.NotFound:
        raise Http404("No such document.") from None
