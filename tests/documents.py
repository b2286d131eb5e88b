"""Documents for tests, stored as the upload task leaves them (ready unless told otherwise)."""

from __future__ import annotations

import hashlib

from chat.models import Document


def make_document(
    user,
    name: str = "notes.txt",
    text: str = "A short document.",
    *,
    status: str = Document.Status.READY,
    **fields,
) -> Document:
    """A text document of `user`; only a ready one holds its extracted text."""
    data = text.encode()
    ready = status == Document.Status.READY
    return Document.objects.create(
        user=user,
        name=name,
        kind=Document.Kind.TEXT,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        status=status,
        text=text if ready else "",
        chars=len(text) if ready else 0,
        **fields,
    )
