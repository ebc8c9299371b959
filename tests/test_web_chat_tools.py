"""The web chat with an assistant that calls tools, in real headless Chromium:
a call that needs approval is shown with its arguments, approved with the
button, and its result shown, collapsed, before the answer; after a reload
the conversation shows the same. The model is the fake Ollama, the tools a
real MCP server. Every request of the page goes to the appliance only."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.support.app import ollama_settings, serve_app
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, ask, last_answer_done, require_chromium, shot, sign_in
from tests.support.fake_ollama import FakeOllama, ToolCalls
from tests.support.mcp_server import TOKEN, RunningErp

playwright_api = pytest.importorskip("playwright.async_api")
require_chromium()
pytestmark = pytest.mark.timeout(180)

TITLE = "Projector in room 4 is dead"


def helpdesk(body: dict):
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if not results and body.get("tools"):
        return ToolCalls([("create_ticket", {"title": TITLE})])
    return f"Done: {results[-1]}" if results else "Nothing to do."


@pytest.fixture(scope="module")
async def app(databases, chroma_url, tmp_path_factory):
    erp = RunningErp().start()
    with FakeOllama() as ollama:
        ollama.respond = helpdesk
        settings = ollama_settings(tmp_path_factory.mktemp("web-tools"), databases.create(), chroma_url, ollama.url)
        async with serve_app(settings) as served:
            body = {
                "name": "erp", "url": erp.state.url, "headers": {"Authorization": f"Bearer {TOKEN}"},
                "requires_approval": ["create_ticket"],
            }  # fmt: skip
            assert (await served.client.post("/tool-servers", json=body)).status_code == 201
            assistant = {"graph_id": "agent", "name": "Helpdesk", "context": {"tools": ["erp/create_ticket"]}}
            assert (await served.client.post("/assistants", json=assistant)).status_code == 200
            served.erp = erp  # type: ignore[attr-defined]
            yield served
    erp.stop()


async def test_a_tool_call_is_approved_with_the_button_and_its_result_shown(app):
    requested: list[str] = []
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        context.on("request", lambda r: requested.append(r.url))
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await sign_in(page, app, app.admin_key)
        await page.get_by_label("Assistant").select_option(label="Helpdesk")
        await page.get_by_role("button", name="New conversation", exact=True).click()
        await page.wait_for_function(
            "() => document.querySelector('#thread-assistant').textContent.includes('Helpdesk')"
        )
        await ask(page, "The projector in room 4 is dead, open a ticket")

        approval = page.get_by_role("group", name="Approve the call of create_ticket")
        await approval.wait_for()
        assert TITLE in await approval.get_by_label("Arguments (JSON)").input_value()
        assert app.erp.state.tickets[TITLE] == 0  # nothing sent before the click
        await shot(page, "20-tool-call-waiting-for-approval")
        await approval.get_by_role("button", name="Approve the call of create_ticket").click()

        answer = await last_answer_done(page)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.message.assistant .text')].at(-1)?.textContent.startsWith('Done:')"
        )
        assert app.erp.state.tickets[TITLE] == 1
        call = answer.locator("details.tool-call")
        assert await call.get_attribute("open") is None  # collapsed by default
        assert await call.locator("summary").inner_text() == "Tool: create_ticket (done)"
        await call.locator("summary").click()
        assert "Ticket T-" in await call.locator(".tool-result").inner_text()
        assert TITLE in await call.locator(".tool-args").inner_text()
        await shot(page, "21-tool-call-approved-and-answered")

        await page.reload()
        await page.locator(".message.assistant details.tool-call").wait_for()
        again = page.locator(".message.assistant").last
        assert await again.locator("summary").inner_text() == "Tool: create_ticket (done)"
        assert (await again.locator(".text").inner_text()).startswith("Done: Ticket T-")
        await browser.close()

    origin = urlsplit(app.url).netloc
    foreign = sorted({u for u in requested if urlsplit(u).netloc != origin and not u.startswith(("data:", "blob:"))})
    assert requested and foreign == []
