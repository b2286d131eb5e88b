"""Documents attached to conversations: every refusal, and turns that send them cached."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx2
import pytest
from asgiref.sync import sync_to_async

from budgets.models import UsageRecord
from budgets.services import budget_state
from chat import errors, selectors
from chat.models import Conversation, ConversationDocument, Document, Message, ModelPrice
from chat.providers import catalog, pricing
from chat.providers.base import Usage
from chat.services import accounting
from chat.services.attachments import (
    conversation_documents,
    document_attach,
    document_detach,
    documents_attachable,
)
from chat.services.turns import Finished, run_turn
from sandbox.server import SandboxServer
from tests import documents

# ~2,400 o200k tokens: past Claude Sonnet's 1,024-token cache minimum and OpenAI's 1,024.
HANDBOOK = (
    "The lighthouse keeper logs the weather at dawn, noon and dusk, and trims the wick "
    "before the evening lamp is lit. "
) * 100


def make_document(user, **fields):
    return documents.make_document(user, **{"name": "handbook.txt", "text": HANDBOOK, **fields})


def attach(user, conversation, document):
    return document_attach(
        user_id=user.id, conversation_id=conversation.id, document_id=document.id
    )


@pytest.fixture
def conversation(user):
    return Conversation.objects.create(user=user, model="claude-sonnet-4-6")


# --- attaching and detaching ------------------------------------------------------------


def test_attach_and_detach_a_ready_document(providers, user, conversation):
    document = make_document(user)
    link = attach(user, conversation, document)
    assert link.document_id == document.id
    assert [d.id for d in conversation_documents(conversation_id=conversation.id)] == [document.id]
    assert documents_attachable(user_id=user.id, conversation_id=conversation.id) == []

    document_detach(user_id=user.id, conversation_id=conversation.id, document_id=document.id)
    assert conversation_documents(conversation_id=conversation.id) == []
    assert Document.objects.filter(pk=document.id).exists()  # detaching keeps the document


def test_another_users_document_is_not_found(providers, user, other_user, conversation):
    theirs = make_document(other_user)
    with pytest.raises(errors.NotFound, match="That document does not exist"):
        attach(user, conversation, theirs)
    with pytest.raises(errors.NotFound):
        document_attach(user_id=user.id, conversation_id=conversation.id, document_id="nope")
    assert not ConversationDocument.objects.exists()


def test_another_users_conversation_is_not_found(providers, user, other_user):
    theirs = Conversation.objects.create(user=other_user)
    mine = make_document(user)
    with pytest.raises(errors.NotFound, match="That conversation does not exist"):
        attach(user, theirs, mine)
    assert not ConversationDocument.objects.exists()


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_a_document_still_processing_is_refused(providers, user, conversation, status):
    document = make_document(user, status=status)
    with pytest.raises(errors.InvalidInput, match="is still being processed"):
        attach(user, conversation, document)
    assert not ConversationDocument.objects.exists()


def test_a_failed_document_is_refused_with_its_reason(providers, user, conversation):
    document = make_document(user, status="failed", error_message="the PDF is encrypted")
    with pytest.raises(errors.InvalidInput) as refused:
        attach(user, conversation, document)
    assert refused.value.message == (
        "“handbook.txt” could not be read (the PDF is encrypted), so it cannot be attached."
    )
    assert not ConversationDocument.objects.exists()


def test_a_document_attached_twice_is_refused(providers, user, conversation):
    document = make_document(user)
    attach(user, conversation, document)
    with pytest.raises(errors.InvalidInput) as refused:
        attach(user, conversation, document)
    assert refused.value.message == "“handbook.txt” is already attached to this conversation."
    assert ConversationDocument.objects.count() == 1


def test_more_documents_than_the_limit_are_refused(providers, settings, user, conversation):
    settings.CHAT_DOCUMENTS_PER_CONVERSATION = 2
    first, second, third = (make_document(user, name=f"d{i}.txt", text="short") for i in range(3))
    attach(user, conversation, first)
    attach(user, conversation, second)
    with pytest.raises(errors.InvalidInput) as refused:
        attach(user, conversation, third)
    assert refused.value.message == (
        "A conversation can have 2 documents attached at most; detach one first."
    )
    assert [d.name for d in conversation_documents(conversation_id=conversation.id)] == [
        "d0.txt",
        "d1.txt",
    ]


def test_documents_that_cannot_fit_the_model_are_refused(providers, user, conversation):
    # Counts stored at processing are used as they are: 120,000 Claude tokens each.
    big = {"claude": 120_000, "o200k_base": 104_000}
    first = make_document(user, name="a.txt", token_counts=big)
    second = make_document(user, name="b.txt", token_counts=big)
    attach(user, conversation, first)
    with pytest.raises(errors.InvalidInput) as refused:
        attach(user, conversation, second)
    message = refused.value.message
    assert refused.value.code == "context_too_long"
    needed = refused.value.extra["needed"]
    assert 241_024 < needed < 241_200  # two texts, a 1,024-token reply and the labels
    assert message == (
        f"These documents would need {needed:,} tokens with the system prompt and a "
        "1,024-token reply, but Claude Sonnet 4.6 takes 200,000. Detach a document or pick a "
        "model with a larger context."
    )
    assert ConversationDocument.objects.count() == 1


def test_detach_refuses_what_is_not_attached_or_not_yours(
    providers, user, other_user, conversation
):
    mine = make_document(user)
    with pytest.raises(errors.NotFound, match="not attached"):
        document_detach(user_id=user.id, conversation_id=conversation.id, document_id=mine.id)
    attach(user, conversation, mine)
    with pytest.raises(errors.NotFound):
        document_detach(user_id=other_user.id, conversation_id=conversation.id, document_id=mine.id)
    assert ConversationDocument.objects.count() == 1


def test_attachable_lists_only_the_users_ready_unattached_documents(
    providers, user, other_user, conversation
):
    attached = make_document(user, name="attached.txt")
    ready = make_document(user, name="ready.txt")
    make_document(user, name="pending.txt", status="pending")
    make_document(other_user, name="theirs.txt")
    attach(user, conversation, attached)
    names = [d.name for d in documents_attachable(user_id=user.id, conversation_id=conversation.id)]
    assert names == [ready.name]


# --- turns ----------------------------------------------------------------------------------


def trace_of(server: SandboxServer, question: str) -> dict:
    traces = httpx2.get(server.base_url + "/sandbox/trace").json()["traces"]
    [trace] = [t for t in traces if t["question"] == question]
    return trace


async def turn(user, conversation, text: str, model: str) -> Finished:
    events = [
        e
        async for e in run_turn(
            user_id=user.id, conversation_id=conversation.id, text=text, model=model
        )
    ]
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


def expected_block(document: Document) -> str:
    return f'<document name="{document.name}">\n{document.text}\n</document>'


@pytest.mark.django_db(transaction=True)
async def test_an_attached_document_is_sent_cached_and_the_second_turn_saves(traced, user):
    # Whole-number prices, so costs are exact and "cheaper by the saving" holds to the micro-dollar.
    await ModelPrice.objects.acreate(
        model_id="claude-sonnet-4-6",
        input=Decimal(4),
        output=Decimal(15),
        cache_write_5m=Decimal(5),
        cache_write_1h=Decimal(8),
        cache_read=Decimal(1),
    )
    pricing.prices_invalidate()
    tag = uuid.uuid4().hex
    conversation = await Conversation.objects.acreate(
        user=user, model="claude-sonnet-4-6", system_prompt=f"Answer briefly. [{tag}]"
    )
    document = await sync_to_async(make_document)(user, name='keeper "log".txt')
    await sync_to_async(attach)(user, conversation, document)

    question = f"When is the lamp lit? {tag}"
    first = await turn(user, conversation, question, "claude-sonnet-4-6")
    system = trace_of(traced, question)["system"]
    block = expected_block(document).replace('"log"', "&quot;log&quot;")
    assert [b["chars"] for b in system] == [len(conversation.system_prompt), len(block)]
    assert system[1]["text"] == block[:500]
    assert [b["cache_control"] for b in system] == [None, {"type": "ephemeral"}]
    assert first.usage.cache_write_tokens > 2_000  # the system prompt and the document
    assert first.usage.cache_read_tokens == 0

    second_question = f"And the wick? {tag}"
    second = await turn(user, conversation, second_question, "claude-sonnet-4-6")
    assert trace_of(traced, second_question)["system"] == system
    usage = second.usage
    assert usage.cache_read_tokens >= first.usage.cache_write_tokens
    model, _ = catalog.resolve("claude-sonnet-4-6")
    saved = accounting.cache_savings(model, usage)
    assert saved == usage.cache_read_tokens * (4 - 1) > 0
    assert second.saved_micros == saved
    uncached = Usage(
        input_tokens=usage.input_tokens + usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
    )
    answer = await Message.objects.aget(pk=second.message_id)
    assert answer.cache_read_tokens == usage.cache_read_tokens
    assert answer.cost_micros == second.cost_micros == accounting.call_cost(model, uncached) - saved
    record = await UsageRecord.objects.aget(message_id=second.message_id)
    assert record.cache_read_tokens == usage.cache_read_tokens
    assert record.cost_micros == answer.cost_micros

    totals = await sync_to_async(selectors.conversation_totals)(conversation_id=conversation.id)
    assert totals["saved_micros"] == saved
    assert totals["cost_micros"] == first.cost_micros + second.cost_micros


@pytest.mark.django_db(transaction=True)
async def test_openai_gets_the_documents_as_system_messages_before_the_history(traced, user):
    tag = uuid.uuid4().hex
    conversation = await Conversation.objects.acreate(user=user, model="gpt-5-mini")
    first_doc = await sync_to_async(make_document)(user, name="first.txt", text=f"{tag} one")
    second_doc = await sync_to_async(make_document)(user, name="second.md")
    await sync_to_async(attach)(user, conversation, first_doc)
    await sync_to_async(attach)(user, conversation, second_doc)

    question = f"Summarise them. {tag}"
    first = await turn(user, conversation, question, "gpt-5-mini")
    system = trace_of(traced, question)["system"]
    assert [b["text"] for b in system] == [
        expected_block(first_doc),
        expected_block(second_doc)[:500],
    ]
    second = await turn(user, conversation, f"Shorter. {tag}", "gpt-5-mini")
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens >= 2_048  # the documents' prefix, automatically
    assert second.saved_micros == accounting.cache_savings(
        catalog.resolve("gpt-5-mini")[0], second.usage
    )


@pytest.mark.django_db(transaction=True)
async def test_documents_too_large_for_the_model_refuse_the_turn_leaving_nothing(traced, user):
    # Attached while the conversation used a larger model; GPT-4o reads 128,000 tokens.
    conversation = await Conversation.objects.acreate(user=user, model="gpt-4.1")
    huge = await sync_to_async(make_document)(user, name="archive.txt", text="hello " * 140_000)
    await sync_to_async(attach)(user, conversation, huge)
    with pytest.raises(errors.ContextTooLong) as refused:
        await turn(user, conversation, "What is in the archive?", "gpt-4o")
    message = refused.value.message
    assert message.startswith("The attached documents (“archive.txt”) with the system prompt,")
    assert "but GPT-4o takes 128,000. Detach a document" in message
    assert refused.value.extra["needed"] > 140_000
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert await UsageRecord.objects.filter(user=user).acount() == 0
    state = await budget_state(user_id=user.id)
    assert state.reserved_tokens == 0
    assert state.tokens_used == 0


@pytest.mark.django_db(transaction=True)
async def test_a_turn_counts_documents_from_their_stored_counts(traced, user):
    # The counts stored when the document was read stand for its text: it is not encoded again.
    conversation = await Conversation.objects.acreate(user=user, model="gpt-4.1")
    document = await sync_to_async(make_document)(
        user, name="dense.txt", text="short text", token_counts={"o200k_base": 130_000}
    )
    await sync_to_async(attach)(user, conversation, document)
    with pytest.raises(errors.ContextTooLong) as refused:
        await turn(user, conversation, "Hello", "gpt-4o")
    assert 130_000 + 1_024 < refused.value.extra["needed"] < 130_000 + 1_024 + 40
    assert "(“dense.txt”)" in refused.value.message
    assert await Message.objects.filter(conversation=conversation).acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_detached_or_unready_document_is_no_longer_sent(traced, user):
    tag = uuid.uuid4().hex
    conversation = await Conversation.objects.acreate(user=user, model="gpt-5-mini")
    kept = await sync_to_async(make_document)(user, name="kept.txt", text=f"kept {tag}")
    gone = await sync_to_async(make_document)(user, name="gone.txt", text=f"gone {tag}")
    redo = await sync_to_async(make_document)(user, name="redo.txt", text=f"redo {tag}")
    for document in (kept, gone, redo):
        await sync_to_async(attach)(user, conversation, document)
    await sync_to_async(document_detach)(
        user_id=user.id, conversation_id=conversation.id, document_id=gone.id
    )
    await Document.objects.filter(pk=redo.pk).aupdate(status=Document.Status.PROCESSING)
    question = f"What is attached? {tag}"
    await turn(user, conversation, question, "gpt-5-mini")
    assert [b["text"] for b in trace_of(traced, question)["system"]] == [expected_block(kept)]


# --- the conversation page --------------------------------------------------------------------


@pytest.fixture
def client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def htmx_post(client, url: str, data: dict | None = None):
    return client.post(url, data or {}, headers={"HX-Request": "true"})


def test_the_page_attaches_and_detaches_with_chips(providers, client, user, conversation):
    document = make_document(user, name="notes <1>.txt")
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert "Attach a document" in page
    assert f'value="{document.id}"' in page
    assert 'class="chip"' not in page

    panel = htmx_post(
        client, f"/c/{conversation.id}/documents/attach/", {"document_id": str(document.id)}
    )
    assert panel.status_code == 200
    html = panel.content.decode()
    assert html.lstrip().startswith('<section class="attachments" id="attachments"')
    assert 'class="chip"' in html
    assert "notes &lt;1&gt;.txt" in html
    assert f"/c/{conversation.id}/documents/{document.id}/detach/" in html
    assert "No documents ready to attach" in html
    assert "notes &lt;1&gt;.txt" in client.get(f"/c/{conversation.id}/").content.decode()

    panel = htmx_post(client, f"/c/{conversation.id}/documents/{document.id}/detach/")
    assert panel.status_code == 200
    assert 'class="chip"' not in panel.content.decode()
    assert not ConversationDocument.objects.exists()


def test_a_refusal_is_shown_in_the_panel(providers, client, user, conversation):
    document = make_document(user, status="processing")
    panel = htmx_post(
        client, f"/c/{conversation.id}/documents/attach/", {"document_id": str(document.id)}
    )
    assert panel.status_code == 200
    assert (
        '<p class="notice error attach-error" role="alert">“handbook.txt” is still being '
        "processed; attach it once it is ready.</p>"
    ) in panel.content.decode()
    assert not ConversationDocument.objects.exists()


def test_without_htmx_a_refusal_is_a_message_after_a_redirect(providers, client, conversation):
    response = client.post(
        f"/c/{conversation.id}/documents/attach/", {"document_id": str(uuid.uuid4())}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.id}/"
    from django.contrib.messages import get_messages

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "That document does not exist."
    ]


def test_another_users_conversation_is_a_404(providers, client, user, other_user):
    theirs = Conversation.objects.create(user=other_user)
    document = make_document(user)
    response = htmx_post(
        client, f"/c/{theirs.id}/documents/attach/", {"document_id": str(document.id)}
    )
    assert response.status_code == 404
    response = htmx_post(client, f"/c/{theirs.id}/documents/{document.id}/detach/")
    assert response.status_code == 404
    assert not ConversationDocument.objects.exists()


def test_the_page_total_shows_what_prompt_caching_saved(providers, client, conversation):
    for read in (1_000, 3_000):
        Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content="answer",
            model="claude-sonnet-4-6",
            input_tokens=10,
            cache_read_tokens=read,
            output_tokens=5,
            cost_micros=100,
        )
    # Claude Sonnet 4.6: $3 input against $0.30 cache reads per million: 4,000 x 2.7 micro-dollars.
    assert selectors.conversation_totals(conversation_id=conversation.id)["saved_micros"] == 10_800
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert '<span id="cache-savings">prompt caching saved $0.0108</span>' in page
    # Each answer keeps its own saving after a reload, not only while the page was open.
    assert "1000 tokens from the prompt cache, saved $0.0027" in page
    assert "3000 tokens from the prompt cache, saved $0.0081" in page


def test_opening_the_menu_lists_documents_read_since_the_page_loaded(
    providers, client, user, other_user, conversation
):
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert "No documents ready to attach" in page
    assert f'hx-get="/c/{conversation.id}/documents/"' in page
    document = make_document(user, name="late.txt")
    make_document(other_user, name="theirs.txt")

    choices = client.get(f"/c/{conversation.id}/documents/", headers={"HX-Request": "true"})
    assert choices.status_code == 200
    html = choices.content.decode()
    assert f'value="{document.id}"' in html
    assert "late.txt" in html
    assert "theirs.txt" not in html
    theirs = Conversation.objects.create(user=other_user)
    assert client.get(f"/c/{theirs.id}/documents/").status_code == 404
