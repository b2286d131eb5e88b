"""The batch pages and the admin."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from chat.models import BatchItem, BatchJob, Document
from chat.services.batch_runs import batch_job_step
from tests.chat.test_batches import set_plan
from tests.documents import make_document


@pytest.fixture
def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def fast_polls(settings):
    settings.CHAT_BATCH_POLL_SECONDS = 0.2


def run_to_end(job: BatchJob) -> None:
    while (wait := async_to_sync(batch_job_step)(job_id=str(job.id))) is not None:
        time.sleep(min(wait, 0.2))


@pytest.mark.django_db
def test_page_offers_only_the_users_ready_documents(providers, user, other_user, client_for):
    make_document(user, "ready.txt", "Text.")
    make_document(user, "busy.txt", "", status=Document.Status.PROCESSING)
    make_document(other_user, "theirs.txt", "Text.")

    page = client_for.get(reverse("chat:batches"))

    body = page.content.decode()
    assert page.status_code == 200
    assert "ready.txt" in body
    assert "busy.txt" not in body
    assert "theirs.txt" not in body
    assert "Summarise this document." in body
    assert f'href="{reverse("chat:batches")}"' in body  # the navigation link
    assert "No batches yet." in body


@pytest.mark.django_db(transaction=True)
def test_starting_a_batch_enqueues_its_task_and_shows_the_job(providers, user, client_for):
    set_plan(user)
    docs = [make_document(user, f"d{i}.txt", f"Text {i}.") for i in range(2)]

    answer = client_for.post(
        reverse("chat:batches"),
        {"documents": [d.pk for d in docs], "model": "claude-sonnet-4-6", "instruction": "Sum."},
    )

    job = BatchJob.objects.get(user=user)
    assert answer.status_code == 302
    assert answer.url == reverse("chat:batch", args=[job.id])
    task = DBTaskResult.objects.get()
    assert task.queue_name == "batches"
    assert task.args_kwargs["args"] == [str(job.id)]
    page = client_for.get(answer.url)
    body = page.content.decode()
    assert "Started a batch over 2 documents." in body
    assert 'hx-trigger="every 2s"' in body  # it polls while the job runs
    assert "Cancel batch" in body


@pytest.mark.django_db
def test_bad_input_shows_the_reason_and_keeps_the_form(providers, user, other_user, client_for):
    set_plan(user)
    mine = make_document(user, "mine.txt", "Text.")
    theirs = make_document(other_user, "theirs.txt", "Text.")

    answer = client_for.post(
        reverse("chat:batches"),
        {
            "documents": [mine.pk, theirs.pk],
            "model": "gpt-4o-mini",
            "instruction": "Keep me",
        },
    )

    body = answer.content.decode()
    assert answer.status_code == 400
    assert "One of those documents does not exist." in body
    assert "Keep me" in body
    assert not BatchJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_finished_job_shows_results_cost_and_saving(providers, user, client_for):
    set_plan(user)
    good = make_document(user, "good.txt", "Good text.")
    bad = make_document(user, "bad.txt", "sandbox-fault:500 Bad text.")
    client_for.post(
        reverse("chat:batches"),
        {"documents": [good.pk, bad.pk], "model": "claude-sonnet-4-6", "instruction": "Sum."},
    )
    job = BatchJob.objects.get()
    run_to_end(job)
    job.refresh_from_db()

    page = client_for.get(reverse("chat:batch", args=[job.id]))
    body = page.content.decode()
    assert "good.txt" in body
    assert "You asked:" in body  # the sandbox's answer, rendered
    assert "Internal server error" in body
    assert "saved $" in body
    assert 'hx-trigger="every 2s"' not in body
    assert "Cancel batch" not in body
    listing = client_for.get(
        reverse("chat:batches"), headers={"HX-Request": "true", "HX-Target": "batch-list"}
    )
    partial = listing.content.decode().strip()
    assert partial.startswith('<section id="batch-list">')  # the list alone, not the page
    assert "2 of 2" in partial


@pytest.mark.django_db(transaction=True)
def test_cancel_from_the_page(providers, user, client_for):
    set_plan(user)
    doc = make_document(user, "a.txt", "Text.")
    client_for.post(
        reverse("chat:batches"),
        {"documents": [doc.pk], "model": "claude-sonnet-4-6", "instruction": "Sum."},
    )
    job = BatchJob.objects.get()

    answer = client_for.post(reverse("chat:batch_cancel", args=[job.id]), follow=True)

    body = answer.content.decode()
    assert "Canceling: documents not yet processed will not be charged." in body
    assert "Canceled before it ran." in body
    job.refresh_from_db()
    assert job.status == BatchJob.Status.CANCELED
    again = client_for.post(reverse("chat:batch_cancel", args=[job.id]), follow=True)
    assert "That batch has already finished." in again.content.decode()


@pytest.mark.django_db
def test_another_users_job_is_a_404(providers, user, other_user):
    set_plan(user)
    doc = make_document(user, "a.txt", "Text.")
    job = BatchJob.objects.create(
        user=user, model="gpt-4o-mini", provider="openai", instruction="x", max_tokens=10
    )
    BatchItem.objects.create(job=job, document=doc, document_name="a.txt", custom_id="a")
    stranger = Client()
    stranger.force_login(other_user)

    assert stranger.get(reverse("chat:batch", args=[job.id])).status_code == 404
    assert stranger.post(reverse("chat:batch_cancel", args=[job.id])).status_code == 404
    job.refresh_from_db()
    assert job.cancel_requested_at is None


@pytest.mark.django_db
def test_admin_shows_a_job_with_its_items(providers, user):
    admin_user = get_user_model().objects.create_superuser("root", password="pw")
    job = BatchJob.objects.create(
        user=user, model="gpt-4o-mini", provider="openai", instruction="x", max_tokens=10
    )
    BatchItem.objects.create(job=job, document_name="inline.txt", custom_id="a")
    client = Client()
    client.force_login(admin_user)

    listing = client.get(reverse("admin:chat_batchjob_changelist"))
    page = client.get(reverse("admin:chat_batchjob_change", args=[job.id]))

    assert listing.status_code == 200
    assert page.status_code == 200
    assert "inline.txt" in page.content.decode()
