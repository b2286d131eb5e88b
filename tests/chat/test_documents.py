"""Documents: checked by content at upload, read by a task (text, progress, token counts)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from chat import errors
from chat.models import Document
from chat.providers import tokens
from chat.services import extraction
from chat.services.documents import (
    document_delete,
    document_get_for_user,
    document_process,
    document_upload,
    documents_read_again,
)
from tests.pdfs import pdf_blank, pdf_encrypted, pdf_with_text

pytestmark = pytest.mark.django_db


def upload(user, name: str, data: bytes) -> Document:
    return document_upload(user_id=user.id, name=name, data=data)


def processed(document: Document, *, attempt: int = 1) -> Document:
    document_process(document_id=document.pk, attempt=attempt)
    return Document.objects.get(pk=document.pk)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty.txt", b"", "is empty"),
        ("paper.txt", pdf_with_text(["x"]), "is named as text but is a PDF"),
        ("paper.md", pdf_with_text(["x"]), "is named as text but is a PDF"),
        ("notes.pdf", b"just some notes\n", "is named .pdf but holds plain text"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "is a PNG image, not text or a PDF"),
        ("report.docx", b"PK\x03\x04" + b"\x00" * 20, "is a ZIP archive"),
        ("latin1.txt", "café".encode("latin-1"), "is binary data, not text or a PDF"),
        ("nul.txt", b"text\x00with a NUL", "is binary data"),
    ],
)
def test_upload_refuses_bad_files_with_a_clear_message(user, name, data, expected):
    with pytest.raises(errors.InvalidInput) as caught:
        upload(user, name, data)
    assert expected in caught.value.message
    assert name in caught.value.message
    assert not Document.objects.exists()
    assert not DBTaskResult.objects.exists()


def test_upload_refuses_a_file_over_the_size_limit(user, settings):
    settings.CHAT_DOCUMENT_MAX_BYTES = 2048
    with pytest.raises(errors.InvalidInput) as caught:
        upload(user, "big.txt", b"a" * 2049)
    assert caught.value.message == "“big.txt” is 2 KB; files may be at most 2 KB."
    assert not Document.objects.exists()


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("notes.txt", b"plain", Document.Kind.TEXT),
        ("README.md", b"# Title", Document.Kind.MARKDOWN),
        ("guide.markdown", b"# Title", Document.Kind.MARKDOWN),
        ("data.csv", b"a,b\n1,2", Document.Kind.TEXT),
        ("noname", pdf_with_text(["x"]), Document.Kind.PDF),
        ("paper.PDF", pdf_with_text(["x"]), Document.Kind.PDF),
    ],
)
def test_kind_comes_from_the_content_and_markdown_from_the_name(name, data, kind):
    assert extraction.document_kind(name=name, data=data, max_bytes=10**6) == kind


def test_upload_keeps_only_the_file_name(user):
    document = upload(user, "C:\\Users\\ada\\secret\\notes.txt", b"hello")
    assert document.name == "notes.txt"
    assert upload(user, "../../etc/passwd.txt", b"x").name == "passwd.txt"


def test_upload_stores_a_pending_document_and_queues_it_on_commit(
    user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        document = upload(user, "notes.md", b"# Notes\n\nSome text.")
    assert document.status == Document.Status.PENDING
    assert document.size_bytes == 19
    assert bytes(Document.objects.get(pk=document.pk).data) == b"# Notes\n\nSome text."
    assert not DBTaskResult.objects.exists()  # nothing queued before the commit
    for callback in callbacks:
        callback()
    queued = DBTaskResult.objects.get()
    assert queued.queue_name == "documents"
    assert queued.task_path == "chat.tasks.documents.document_process_task"
    assert queued.args_kwargs["kwargs"] == {"document_id": str(document.pk)}


def test_a_pdf_is_read_page_by_page_with_tokens_per_tokenizer(user):
    data = pdf_with_text(["The first page says hello.", "The second page says goodbye."])
    document = processed(upload(user, "paper.pdf", data))
    assert document.status == Document.Status.READY
    assert document.kind == Document.Kind.PDF
    assert document.pages == 2
    assert document.progress == 100
    assert document.text == "The first page says hello.\n\nThe second page says goodbye."
    assert document.chars == len(document.text)
    assert document.token_counts == {
        "o200k_base": tokens.count_text(document.text, "o200k_base"),
        "cl100k_base": tokens.count_text(document.text, "cl100k_base"),
        "claude": tokens.claude_text_tokens(document.text),
    }
    assert document.token_counts["o200k_base"] > 5
    assert document.processed_at is not None
    assert document.error_message == ""


def test_text_is_read_with_normalised_line_ends_and_capped(user, settings):
    settings.CHAT_DOCUMENT_MAX_CHARS = 10
    document = processed(upload(user, "notes.txt", "\ufeffline one\r\nline two\r\n".encode()))
    assert document.status == Document.Status.READY
    assert document.text == "line one\nl"
    assert document.chars == 10
    assert document.pages is None


def test_progress_is_reported_per_pdf_page(user):
    seen: list[tuple[int, int]] = []
    data = pdf_with_text(["one", "two", "three"])
    extraction.text_extract(kind="pdf", data=data, max_chars=99, on_page=lambda *p: seen.append(p))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_progress_is_stored_while_processing(user, monkeypatch):
    document = upload(user, "paper.pdf", pdf_with_text(["one", "two", "three", "four"]))
    stored: list[int] = []
    real_extract = extraction.text_extract

    def spying_extract(**kwargs):
        on_page = kwargs.pop("on_page")

        def record(done: int, total: int) -> None:
            on_page(done, total)
            stored.append(Document.objects.get(pk=document.pk).progress)

        return real_extract(on_page=record, **kwargs)

    monkeypatch.setattr(extraction, "text_extract", spying_extract)
    assert processed(document).progress == 100
    assert stored == [25, 50, 75, 99]


def test_an_encrypted_pdf_fails_with_the_reason(user):
    document = processed(upload(user, "locked.pdf", pdf_encrypted(pdf_with_text(["secret"]))))
    assert document.status == Document.Status.FAILED
    assert document.error_message.startswith("This PDF is encrypted")
    assert document.text == ""
    assert document.token_counts == {}


def test_a_pdf_without_text_fails_as_a_likely_scan(user):
    document = processed(upload(user, "scan.pdf", pdf_blank(2)))
    assert document.status == Document.Status.FAILED
    assert "no text in it (a scanned PDF?)" in document.error_message


def test_a_damaged_pdf_fails_with_the_reason(user):
    document = processed(upload(user, "broken.pdf", b"%PDF-1.7\nnot really a pdf at all"))
    assert document.status == Document.Status.FAILED
    assert "could not be read" in document.error_message


def test_a_text_file_of_blank_space_fails(user):
    document = processed(upload(user, "blank.txt", b"  \n\t\n"))
    assert document.status == Document.Status.FAILED
    assert "only blank space" in document.error_message


def test_processing_again_changes_nothing(user):
    document = processed(upload(user, "notes.txt", b"hello there"))
    Document.objects.filter(pk=document.pk).update(text="kept as it is")
    assert document_process(document_id=document.pk, attempt=2) == "skipped"
    assert Document.objects.get(pk=document.pk).text == "kept as it is"
    failed = processed(upload(user, "scan.pdf", pdf_blank()))
    assert document_process(document_id=failed.pk) == "skipped"
    assert Document.objects.get(pk=failed.pk).status == Document.Status.FAILED


def test_a_document_deleted_before_processing_is_skipped(user):
    document = upload(user, "notes.txt", b"hello")
    document_delete(user_id=user.id, document_id=document.pk)
    assert document_process(document_id=document.pk) == "skipped"
    assert not Document.objects.exists()


def test_a_run_cut_short_is_resumed_from_the_start(user):
    document = upload(user, "notes.txt", b"hello")
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING, progress=40)
    assert processed(document, attempt=2).status == Document.Status.READY


def test_a_file_that_keeps_killing_the_worker_fails(user, settings):
    settings.TASKS_MAX_ATTEMPTS = 3
    document = upload(user, "huge.pdf", pdf_with_text(["x"]))
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING)
    document = processed(document, attempt=3)
    assert document.status == Document.Status.FAILED
    assert "cut short 2 times" in document.error_message


def test_another_users_document_is_not_found(user, other_user):
    theirs = upload(other_user, "private.txt", b"secret")
    with pytest.raises(errors.NotFound):
        document_get_for_user(user_id=user.id, document_id=theirs.pk)
    with pytest.raises(errors.NotFound):
        document_delete(user_id=user.id, document_id=theirs.pk)
    with pytest.raises(errors.NotFound):
        document_get_for_user(user_id=user.id, document_id="not-a-uuid")
    assert Document.objects.filter(pk=theirs.pk).exists()


def test_read_again_resets_a_failed_document_and_queues_it(
    user, django_capture_on_commit_callbacks
):
    document = processed(upload(user, "scan.pdf", pdf_blank()))
    with django_capture_on_commit_callbacks(execute=True):
        assert documents_read_again(document_ids=[document.pk]) == 1
    document.refresh_from_db()
    assert (document.status, document.error_message) == (Document.Status.PENDING, "")
    queued = DBTaskResult.objects.get()
    assert queued.args_kwargs["kwargs"] == {"document_id": str(document.pk)}


def test_admin_lists_documents_without_their_text(client, user):
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser("root", password="pw-root-123")
    client.force_login(admin_user)
    document = processed(upload(user, "notes.txt", b"the secret body text"))
    listing = client.get(reverse("admin:chat_document_changelist"), {"status": "ready"})
    assert listing.status_code == 200
    assert "notes.txt" in listing.content.decode()
    assert "the secret body text" not in listing.content.decode()
    change = client.get(reverse("admin:chat_document_change", args=[document.pk]))
    assert "the secret body text" in change.content.decode()
