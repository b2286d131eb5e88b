"""What an uploaded file really is (by its bytes, never its name), and the text inside it.

Kinds: a PDF starts with `%PDF-`; text is UTF-8 (a BOM allowed) without NUL bytes, and is
Markdown when its name ends in .md or .markdown. A name that claims one kind for the other's
bytes (`notes.pdf` holding text, `paper.txt` holding a PDF) is refused as mislabelled, so a
person learns what they really uploaded instead of getting a surprising result.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from chat import errors
from chat.models import Document

logger = logging.getLogger(__name__)

Kind = Document.Kind
PDF_NAMES = frozenset({".pdf"})
MARKDOWN_NAMES = frozenset({".md", ".markdown"})
TEXT_NAMES = frozenset({".txt", ".text"})
# Bytes that mark common files which are neither text nor PDF, to say what was uploaded.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (a Word, Excel or OpenDocument file is one)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file"),
    (b"{\\rtf", "an RTF document"),
)
PDF_CHECK_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Extracted:
    """The text of a document (cut at the limit) and how many pages it had (PDF)."""

    text: str
    pages: int | None


def clean_name(name: str) -> str:
    """The file name without any folder, control characters or excess length."""
    base = PureWindowsPath(PurePosixPath(name or "").name).name
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return (base or "untitled")[-255:]


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _is_pdf(data: bytes) -> bool:
    # The header may follow a little junk; readers accept it within the first kilobyte.
    return b"%PDF-" in data[:PDF_CHECK_BYTES]


def _binary_description(data: bytes) -> str:
    for signature, description in _SIGNATURES:
        if data.startswith(signature):
            return description
    return "binary data"


def _decode_text(data: bytes) -> str | None:
    """The text, or None when the bytes are not UTF-8 text."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def document_kind(*, name: str, data: bytes, max_bytes: int) -> Kind:
    """The kind of an upload judged by its content; InvalidInput says what is wrong with it."""
    if not data:
        raise errors.InvalidInput(f"“{name}” is empty: there is nothing to read in it.")
    if len(data) > max_bytes:
        raise errors.InvalidInput(
            f"“{name}” is {_megabytes(len(data))}; files may be at most {_megabytes(max_bytes)}."
        )
    suffix = _suffix(name)
    if _is_pdf(data):
        if suffix in MARKDOWN_NAMES | TEXT_NAMES:
            raise errors.InvalidInput(
                f"“{name}” is named as text but is a PDF. Rename it to end in .pdf and upload it "
                "again."
            )
        return Kind.PDF
    if _decode_text(data) is None:
        raise errors.InvalidInput(
            f"“{name}” is {_binary_description(data)}, not text or a PDF. Upload plain text "
            "(UTF-8), Markdown or a PDF."
        )
    if suffix in PDF_NAMES:
        raise errors.InvalidInput(
            f"“{name}” is named .pdf but holds plain text, not a PDF. Rename it to end in .txt "
            "(or .md) and upload it again."
        )
    return Kind.MARKDOWN if suffix in MARKDOWN_NAMES else Kind.TEXT


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")


def text_extract(
    *,
    kind: str,
    data: bytes,
    max_chars: int,
    on_page: Callable[[int, int], None] | None = None,
) -> Extracted:
    """The text of a document, at most `max_chars`; on_page(done, total) reports PDF progress."""
    if kind != Kind.PDF:
        text = _decode_text(data)
        if text is None:  # checked at upload; a changed row must not crash the worker
            raise errors.InvalidInput("This file is not UTF-8 text.")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            raise errors.InvalidInput("This file holds only blank space: there is no text in it.")
        return Extracted(text=text[:max_chars], pages=None)
    return _pdf_extract(data=data, max_chars=max_chars, on_page=on_page)


def _pdf_extract(
    *, data: bytes, max_chars: int, on_page: Callable[[int, int], None] | None
) -> Extracted:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise errors.InvalidInput(
                "This PDF is encrypted (it needs a password to open). Save a copy without the "
                "password and upload that."
            )
        pages = reader.pages
        total = len(pages)
        parts: list[str] = []
        length = 0
        for number, page in enumerate(pages, start=1):
            page_text = (page.extract_text() or "").strip()
            if page_text:
                parts.append(page_text)
                length += len(page_text) + 2
            if on_page is not None:
                on_page(number, total)
            if length > max_chars:
                break
    except errors.ChatError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError) as exc:
        logger.info("unreadable PDF: %r", exc)
        raise errors.InvalidInput(
            "This PDF could not be read: it looks damaged or uses features this service cannot "
            "open."
        ) from exc
    text = "\n\n".join(parts)
    if not text.strip():
        raise errors.InvalidInput(
            "This PDF has no text in it (a scanned PDF?). Only PDFs with selectable text can be "
            "read; run it through OCR first."
        )
    return Extracted(text=text[:max_chars], pages=total)
