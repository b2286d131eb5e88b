"""The documents page: upload with htmx, size refusals, live progress, delete, ownership."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chat.models import Document
from tests.pdfs import pdf_with_text

HTMX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def post_file(client: Client, name: str, data: bytes, **kwargs):
    return client.post(
        reverse("chat:documents"), {"file": SimpleUploadedFile(name, data)}, **kwargs
    )


def test_page_needs_sign_in(client, db):
    response = client.get(reverse("chat:documents"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_page_lists_only_my_documents_and_links_from_the_top_bar(signed_in, user, other_user):
    Document.objects.create(user=user, name="mine.txt", kind="text", size_bytes=1, sha256="x")
    Document.objects.create(user=other_user, name="theirs.txt", kind="text", size_bytes=1)
    page = signed_in.get(reverse("chat:documents")).content.decode()
    assert "mine.txt" in page
    assert "theirs.txt" not in page
    assert f'href="{reverse("chat:documents")}"' in page


def test_htmx_upload_returns_the_section_with_the_new_document_polling(signed_in, user):
    response = post_file(signed_in, "notes.md", b"# Notes", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="documents">')
    document = Document.objects.get(user=user)
    assert document.kind == Document.Kind.MARKDOWN
    assert "notes.md" in html
    row_url = reverse("chat:document_row", args=[document.pk])
    assert f'hx-get="{row_url}" hx-trigger="every 1s"' in html


def test_plain_upload_redirects_with_a_notice(signed_in, user):
    response = post_file(signed_in, "notes.txt", b"hello", follow=True)
    assert response.redirect_chain == [(reverse("chat:documents"), 302)]
    assert "Uploaded “notes.txt”; its text is being read." in response.content.decode()


def test_a_refused_upload_shows_the_reason_in_the_form(signed_in, user):
    response = post_file(signed_in, "notes.pdf", b"plain text", headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200  # htmx swaps only 2xx answers
    assert 'role="alert"' in html
    assert "is named .pdf but holds plain text" in html
    assert not Document.objects.exists()
    plain = post_file(signed_in, "notes.pdf", b"plain text")
    assert plain.status_code == 400
    assert "is named .pdf but holds plain text" in plain.content.decode()


def test_an_upload_without_a_file_is_refused(signed_in):
    response = signed_in.post(reverse("chat:documents"), {})
    assert response.status_code == 400
    assert "Choose a file to upload." in response.content.decode()


def test_oversized_upload_is_refused_by_its_declared_length_before_parsing(signed_in, settings):
    settings.CHAT_DOCUMENT_MAX_BYTES = 1000
    response = post_file(signed_in, "big.txt", b"a" * 100_000)
    assert response.status_code == 413
    assert "This upload is larger than the limit" in response.content.decode()
    assert not Document.objects.exists()


def test_oversized_file_is_stopped_while_it_is_read(signed_in, settings):
    settings.CHAT_DOCUMENT_MAX_BYTES = 1000
    response = post_file(signed_in, "big.txt", b"a" * 1500)
    assert response.status_code == 413
    assert "“big.txt” is larger than the limit" in response.content.decode()
    assert not Document.objects.exists()


def test_upload_checks_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = post_file(client, "notes.txt", b"hello")
    assert response.status_code == 403
    assert not Document.objects.exists()


def test_row_shows_progress_then_the_outcome_and_stops_polling(signed_in, user):
    document = Document.objects.create(
        user=user, name="paper.pdf", kind="pdf", size_bytes=10, status="processing", progress=40
    )
    url = reverse("chat:document_row", args=[document.pk])
    html = signed_in.get(url, headers=HTMX).content.decode()
    assert '<progress max="100" value="40"' in html
    assert 'hx-trigger="every 1s"' in html
    Document.objects.filter(pk=document.pk).update(
        status="ready", progress=100, pages=3, chars=1200,
        token_counts={"o200k_base": 250, "cl100k_base": 260, "claude": 300},
    )  # fmt: skip
    html = signed_in.get(url, headers=HTMX).content.decode()
    assert "hx-trigger" not in html
    assert "Ready · 3 pages · 1200 characters" in html
    assert "250 GPT-4o<br>260 GPT-4<br>≈300 Claude" in html
    Document.objects.filter(pk=document.pk).update(status="failed", error_message="Broken file.")
    html = signed_in.get(url, headers=HTMX).content.decode()
    assert "hx-trigger" not in html
    assert "Failed: Broken file." in html


def test_delete_asks_then_deletes(signed_in, user):
    document = Document.objects.create(user=user, name="old.txt", kind="text", size_bytes=1)
    url = reverse("chat:document_delete", args=[document.pk])
    assert "Delete this document?" in signed_in.get(url).content.decode()
    assert Document.objects.exists()
    response = signed_in.post(url, follow=True)
    assert response.redirect_chain == [(reverse("chat:documents"), 302)]
    assert "Deleted “old.txt”." in response.content.decode()
    assert not Document.objects.exists()


def test_another_users_document_is_a_404_everywhere(signed_in, other_user):
    theirs = Document.objects.create(user=other_user, name="t.txt", kind="text", size_bytes=1)
    assert signed_in.get(reverse("chat:document_row", args=[theirs.pk])).status_code == 404
    delete_url = reverse("chat:document_delete", args=[theirs.pk])
    assert signed_in.get(delete_url).status_code == 404
    assert signed_in.post(delete_url).status_code == 404
    assert Document.objects.filter(pk=theirs.pk).exists()


def test_an_uploaded_pdf_is_read_by_the_worker(task_worker, user):
    from django_tasks_db.models import DBTaskResult

    client = Client()
    client.force_login(user)
    data = pdf_with_text(["Quarterly report", "Revenue grew."])
    assert post_file(client, "report.pdf", data, headers=HTMX).status_code == 200
    queued = DBTaskResult.objects.get()
    row = task_worker.wait_for_result(queued.id)
    assert row.status == "SUCCESSFUL", row.traceback
    assert row.return_value == "ready"
    document = Document.objects.get(user=user)
    assert document.status == Document.Status.READY
    assert document.text == "Quarterly report\n\nRevenue grew."
    html = client.get(reverse("chat:document_row", args=[document.pk])).content.decode()
    assert "Ready · 2 pages" in html
