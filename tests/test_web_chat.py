"""The web chat in a real headless Chromium (Debian's, driven by Playwright),
against the real appliance: PostgreSQL, Chroma, MiniLM, the agent's graph,
with the model scripted (and slowed, so streaming can be watched).

Every request the browser makes is recorded; none may leave the appliance.
Screenshots are saved under test-artifacts/web-chat/.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from urllib.parse import urlsplit

import pytest

from appliance.store.audit import Actor
from tests.support.app import model_delay
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ask,
    last_answer_done,
    new_conversation,
    require_chromium,
    shot,
    sign_in,
)
from tests.support.corpus import write_corpus
from tests.support.librarian import MARKDOWN
from tests.support.turns import user

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
require_chromium()

PALLETS = "How many pallets does the Rotterdam warehouse hold?"
PALLET_SENTENCE = "The Rotterdam warehouse stores 48000 pallets and opened in March 2019."


@pytest.fixture(scope="module")
def app(librarian_app):
    return librarian_app


@pytest.fixture(scope="module")
async def key(app) -> str:
    _, secret = await app.runtime.keys.create(f"web-{uuid.uuid4().hex[:6]}", actor=Actor.host())
    return secret


@pytest.fixture(scope="module")
async def browser():
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
def requested() -> list[str]:
    """Every URL any page of this module asked for."""
    return []


@pytest.fixture
async def page(browser, requested, request):
    viewport = getattr(request, "param", {"width": 1280, "height": 800})
    context = await browser.new_context(viewport=viewport)
    context.on("request", lambda r: requested.append(r.url))
    page = await context.new_page()
    page.set_default_timeout(15_000)
    yield page
    await context.close()


async def test_a_wrong_key_is_refused_and_the_right_one_signs_in(page, app, key):
    response = await page.goto(app.url)
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    await page.get_by_label("API key").fill("not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("That key was not accepted").wait_for()
    await shot(page, "01-sign-in-refused")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="New conversation", exact=True).wait_for()
    assert key not in page.url
    assert await page.evaluate("sessionStorage.getItem('appliance.api-key')") == key


async def test_an_answer_streams_in_token_by_token(page, app, key):
    await sign_in(page, app, key)
    await new_conversation(page)
    with model_delay(app, 0.4):
        await ask(page, "Hello there")
        # Part of the answer is on the page while it is still being written.
        partial = await page.wait_for_function(
            "() => { const a = document.querySelector('.message.assistant[aria-busy] .text');"
            " return a && a.textContent.length > 0 && a.textContent; }"
        )
        partial_text = await partial.json_value()
        await shot(page, "02-streaming")
        answer = await last_answer_done(page)
    final = await answer.locator(".text").inner_text()
    assert final.startswith("Hello! (reply ") and len(final) > len(partial_text)
    assert final.startswith(partial_text)
    # The conversation took its title from the question.
    await page.get_by_role("link", name="Hello there").wait_for()


async def test_upload_then_ask_shows_progress_cites_and_opens_the_passage(page, app, key, tmp_path):
    await sign_in(page, app, key)
    await new_conversation(page)
    await page.get_by_role("button", name="Knowledge").click()
    await page.get_by_label("Into").select_option(label="A new knowledge base…")
    await page.get_by_label("Name of the new knowledge base").fill("Company")
    corpus = write_corpus(tmp_path / "corpus")
    rejected = tmp_path / "setup.exe"
    rejected.write_bytes(b"MZ\x90\x00binary")
    await page.get_by_label("Files").set_input_files([corpus["report.pdf"], corpus["handbook.md"], rejected])
    await page.get_by_role("button", name="Upload").click()
    uploads = page.locator("#uploads li")
    await page.wait_for_function("() => document.querySelectorAll('#uploads li.ok, #uploads li.rejected').length === 3")
    for name in ("report.pdf", "handbook.md"):
        assert (await uploads.filter(has_text=name).locator(".outcome").inner_text()).startswith("Added: ")
    refusal = await uploads.filter(has_text="setup.exe").locator(".outcome").inner_text()
    assert refusal.startswith("Rejected: setup.exe: files of type '.exe' are not supported")
    assert await page.locator("#uploads progress").evaluate_all("bars => bars.every(b => b.value === 100)")
    # The new base is chosen for this conversation.
    assert await page.get_by_label("Company").is_checked()
    await shot(page, "03-uploaded")

    await page.evaluate(
        """() => { window.progressSeen = [];
        new MutationObserver(() => document.querySelectorAll('.progress').forEach(p =>
            p.textContent && !window.progressSeen.includes(p.textContent) && window.progressSeen.push(p.textContent)))
        .observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true}); }"""
    )
    with model_delay(app, 0.2):
        await ask(page, PALLETS)
        answer = await last_answer_done(page)
    assert await answer.locator(".text").inner_text() == f"{PALLET_SENTENCE} [1]"
    seen = await page.evaluate("window.progressSeen")
    assert "Searching the documents…" in seen and "Writing the answer from the sources…" in seen

    await answer.get_by_role("button", name="Source 1: report.pdf, page 2", exact=True).click()
    dialog = page.get_by_role("dialog")
    await dialog.wait_for()
    assert "48000 pallets" in await dialog.locator("blockquote").inner_text()
    assert await dialog.locator("#passage-where").inner_text() == "report.pdf, page 2"
    # The sentence that supports the answer is highlighted.
    assert await dialog.locator("blockquote mark").all_inner_texts() == [PALLET_SENTENCE]
    await shot(page, "04-citation-opened")
    await page.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")
    # The answer keeps its sources after a reload: they are stored with it.
    await page.reload()
    await page.get_by_role("button", name="Open source 1: report.pdf, page 2").click()
    await expect(page.locator("#passage-text")).to_contain_text("48000 pallets")


async def test_answers_render_as_markdown_and_their_html_stays_inert(page, app, key):
    await sign_in(page, app, key)
    await new_conversation(page)
    # A plain conversation, no knowledge: the model's own answer, not checked against sources.
    await page.get_by_role("button", name=re.compile(r"^Knowledge")).click()
    ticked = page.locator("#bases input[type=checkbox]:checked")
    while await ticked.count():
        await ticked.first.uncheck()
    await expect(page.get_by_role("button", name=re.compile(r"^Knowledge"))).to_have_text("Knowledge (0)")
    await ask(page, MARKDOWN)
    answer = await last_answer_done(page)
    text = answer.locator(".text")
    assert await text.locator("li").all_inner_texts() == ["first bold", "second"]
    assert await text.locator("li strong").inner_text() == "bold"
    assert await text.locator("pre code").inner_text() == "print(1 < 2)\n"
    # Raw HTML is shown as text and never runs; a javascript: link loses its target.
    assert "<script>window.pwned = 'script'</script>" in await text.inner_text()
    assert await text.locator("script, img, [onerror]").count() == 0
    assert await text.locator("[href^='javascript' i]").count() == 0
    await text.get_by_text("click", exact=True).click()
    await page.wait_for_timeout(200)
    assert await page.evaluate("window.pwned") is None
    await shot(page, "08-markdown")


async def test_conversations_survive_a_reload_and_can_be_renamed_and_deleted(page, app, key):
    await sign_in(page, app, key)
    await new_conversation(page)
    await ask(page, "Hello, keep this")
    await last_answer_done(page)
    # The list's refresh after the next answer is held until a rename is begun: its
    # arrival must not sweep the title being typed away (it once did, under load).
    opened = asyncio.Event()

    async def hold(route):
        await opened.wait()
        await route.continue_()

    await page.route("**/threads/search", hold)
    await ask(page, "And this")
    await last_answer_done(page)
    await page.get_by_role("button", name="Rename “Hello, keep this”").click()
    await page.get_by_label("New title").fill("Kept")
    async with page.expect_response("**/threads/search"):
        opened.set()
    await page.wait_for_timeout(200)  # the refreshed list drawn
    await page.unroute("**/threads/search", hold)
    await page.get_by_label("New title").fill("Kept conversation", timeout=1000)
    await page.get_by_label("New title").press("Enter")
    await page.get_by_role("link", name="Kept conversation").wait_for()

    await page.reload()
    await expect(page.locator("#title")).to_have_text("Kept conversation")
    await expect(page.get_by_role("link", name="Kept conversation")).to_have_attribute("aria-current", "page")
    answered = ["Hello, keep this", re.compile(r"^Hello! \(reply "), "And this", re.compile(r"\S")]
    await expect(page.locator(".message .text")).to_have_text(answered)
    await shot(page, "05-after-reload")

    thread_id = page.url.rsplit("/", 1)[1]
    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="Delete “Kept conversation”").click()
    await page.get_by_role("link", name="Kept conversation").wait_for(state="detached")
    response = await app.as_key(key).get(f"/threads/{thread_id}")
    assert response.status_code == 404


async def test_a_long_conversation_shows_its_latest_turns_and_the_archived_ones_on_request(page, app, key):
    client = app.as_key(key)
    created = await client.post("/threads", json={"metadata": {"title": "A long talk", "knowledge_bases": []}})
    thread_id = created.json()["thread_id"]
    filler = " ".join(["words"] * 40)  # long turns: the state's window fills in a few of them
    for n in range(1, 31):
        response = await client.post(f"/threads/{thread_id}/runs/wait", json=user(f"note {n}: {filler}"))
        assert response.status_code == 200, response.text
    archived = (await client.get(f"/threads/{thread_id}/state")).json()["values"]["archived"]
    assert archived > 0

    await sign_in(page, app, key)
    await page.get_by_role("link", name="A long talk").click()
    notes = page.locator(".message.user .text")
    await expect(notes.last).to_have_text(f"note 30: {filler}")
    assert await notes.count() < 30
    earlier = page.get_by_role("button", name=f"Show earlier messages ({archived})")
    await earlier.click()
    await expect(notes).to_have_count(30)
    await expect(notes.first).to_have_text(f"note 1: {filler}")
    await expect(page.get_by_role("button", name=re.compile("Show earlier messages"))).to_have_count(0)
    await shot(page, "06-earlier-messages")


async def test_a_conversation_started_with_a_chosen_assistant_shows_and_uses_it_after_a_reload(page, app):
    _, secret = await app.runtime.keys.create(f"web-{uuid.uuid4().hex[:6]}", actor=Actor.host())
    # Strict answers only from documents and has none: its answer is the refusal, never the model's chat.
    strict = {"documents_only": True, "knowledge_bases": []}
    created = await app.as_key(secret).post(
        "/assistants", json={"graph_id": "agent", "name": "Strict", "context": strict}
    )
    assert created.status_code == 200, created.text
    await sign_in(page, app, secret)
    await page.get_by_label("Assistant").select_option(label="Strict")
    await new_conversation(page)
    await expect(page.locator("#thread-assistant")).to_have_text("with Strict")
    await ask(page, "Hello there")
    answer = await last_answer_done(page)
    assert (await answer.locator(".text").inner_text()).startswith("The documents available to this conversation")
    await shot(page, "07-assistant-chosen")

    await page.reload()
    await page.get_by_role("textbox", name="Message").wait_for()
    await expect(page.locator("#thread-assistant")).to_have_text("with Strict")
    assert await page.get_by_label("Assistant").evaluate("s => s.selectedOptions[0].text") == "agent"
    await ask(page, "Hello again")
    answer = await last_answer_done(page)
    assert (await answer.locator(".text").inner_text()).startswith("The documents available to this conversation")

    # A conversation started with the built-in assistant chats as before.
    await new_conversation(page)
    await expect(page.locator("#thread-assistant")).to_have_text("with agent")
    await ask(page, "Hello there")
    answer = await last_answer_done(page)
    assert (await answer.locator(".text").inner_text()).startswith("Hello! (reply ")


async def test_stop_ends_a_running_answer(page, app, key):
    await sign_in(page, app, key)
    await new_conversation(page)
    with model_delay(app, 2.0):
        await ask(page, "Hello, take your time")
        await page.wait_for_function("() => document.querySelector('.message.assistant[aria-busy] .text')?.textContent")
        await page.get_by_role("button", name="Stop").click()
        answer = await last_answer_done(page)
    assert await answer.locator(".progress").inner_text() == "Stopped."
    assert await page.get_by_role("button", name="Send").is_visible()
    thread_id = page.url.rsplit("/", 1)[1]
    runs = (await app.as_key(key).get(f"/threads/{thread_id}/runs")).json()
    assert [r["status"] for r in runs] == ["interrupted"]


@pytest.mark.parametrize("page", [{"width": 390, "height": 844}], indirect=True)
async def test_on_a_phone_the_conversations_open_as_a_drawer(page, app, key):
    # The conversation the page opens at sign-in is held back until the drawer is
    # open: its arrival must not shut the drawer (it once did, under load).
    assert (await app.as_key(key).post("/threads", json={"metadata": {"title": "Held back"}})).status_code == 200
    arrived = asyncio.Event()

    async def hold(route):
        await arrived.wait()
        await route.continue_()

    await page.route("**/threads/*/state", hold)
    await sign_in(page, app, key)
    assert not await page.locator("#sidebar").is_visible()
    await page.get_by_role("button", name="Conversations").click()
    arrived.set()
    await page.wait_for_function("() => location.hash.startsWith('#/c/')")  # the conversation has loaded
    await page.unroute("**/threads/*/state", hold)
    assert await page.locator("#sidebar").is_visible()
    await shot(page, "06-phone-drawer")
    await new_conversation(page)
    await page.locator("#sidebar").wait_for(state="hidden")  # the drawer closes once a conversation is chosen
    await page.get_by_role("button", name="Conversations").click()
    await page.get_by_role("link", name="Held back").click()
    await page.locator("#sidebar").wait_for(state="hidden")
    await expect(page.locator("#title")).to_have_text("Held back")
    assert await page.get_by_role("textbox", name="Message").is_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await shot(page, "07-phone-chat")


async def test_the_page_asked_nothing_of_any_host_but_the_appliance(app, requested):
    # Runs last in this module: every page above recorded its requests.
    origin = urlsplit(app.url).netloc
    assert len(requested) > 20
    foreign = sorted({u for u in requested if urlsplit(u).netloc != origin and not u.startswith(("data:", "blob:"))})
    assert foreign == []
