"""Batch pages: start a job over documents, follow its progress (htmx polling), cancel it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import errors, selectors
from chat.models import BatchJob
from chat.services import batch_progress, batches, billing

ACTIVE = (BatchJob.Status.QUEUED, BatchJob.Status.RUNNING, BatchJob.Status.CANCELING)


def _form_context(request: HttpRequest, **values: object) -> dict[str, object]:
    user_id = request.user.id
    jobs = batch_progress.batch_job_list(user_id=user_id)
    return {
        "jobs": jobs,
        "polling": any(job.status in ACTIVE for job in jobs),
        "documents": batch_progress.batch_ready_documents(user_id=user_id),
        "models": selectors.models_for_user(user_id=user_id),
        "instruction": batches.DEFAULT_INSTRUCTION,
        "picked": [],
        "model": "",
        "teams": billing.billing_teams(user_id=user_id),
        "team": None,  # None: the first team is preselected
        **values,
    }


@login_required
@require_http_methods(["GET", "POST"])
def batch_list(request: HttpRequest) -> HttpResponse:
    """The user's batch jobs; a POST starts one over the picked documents."""
    if request.method == "POST":
        picked = request.POST.getlist("documents")
        model = request.POST.get("model", "")
        instruction = request.POST.get("instruction", "")
        team = request.POST.get("team", billing.PERSONAL_CHOICE)
        try:
            job = batches.batch_job_create(
                user_id=request.user.id,
                model=model,
                document_ids=picked,
                instruction=instruction,
                team=team,
            )
        except errors.ChatError as exc:
            context = _form_context(
                request,
                error=exc.message,
                picked=picked,
                model=model,
                instruction=instruction,
                team=team,
            )
            return render(request, "chat/batches.html", context, status=400)
        messages.success(request, f"Started a batch over {job.item_count} documents.")
        return redirect("chat:batch", job_id=job.id)
    context = _form_context(request)
    if request.htmx and request.htmx.target == "batch-list":
        return render(request, "chat/batches.html#batch-list", context)
    return render(request, "chat/batches.html", context)


def _owned(request: HttpRequest, job_id: str) -> BatchJob:
    try:
        return batches.batch_job_get_for_user(user_id=request.user.id, job_id=job_id)
    except errors.NotFound:
        raise Http404("No such batch.") from None


@login_required
@require_GET
def batch_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    """One job: its progress and each document's result, error, cost and saving."""
    job = _owned(request, job_id)
    context = {
        "job": job,
        "items": batch_progress.batch_item_rows(job=job),
        "saving": batch_progress.batch_job_saving(job),
        "active": ACTIVE,
    }
    if request.htmx and request.htmx.target == "batch-detail":
        return render(request, "chat/batches_detail.html#batch-detail", context)
    return render(request, "chat/batches_detail.html", context)


@login_required
@require_POST
def batch_cancel(request: HttpRequest, job_id: str) -> HttpResponse:
    """Cancel a job: what has not run is not charged."""
    try:
        batches.batch_job_cancel(user_id=request.user.id, job_id=job_id)
    except errors.NotFound:
        raise Http404("No such batch.") from None
    except errors.InvalidInput as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Canceling: documents not yet processed will not be charged.")
    return redirect("chat:batch", job_id=job_id)
