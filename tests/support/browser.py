"""Driving the web chat in Debian's Chromium: the browser's flags, and the
steps a person takes (sign in, start a conversation, ask, wait)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-chat"
# The flags of a browser that must not phone home: no background networking,
# component updates, sync or QUIC probing.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]


def require_chromium() -> None:
    """At a browser test module's top: skip it without Chromium, unless CI requires the browser."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("TEST_REQUIRE_BROWSER"):
            raise RuntimeError(f"{CHROMIUM} is missing and TEST_REQUIRE_BROWSER is set; apt-get install chromium")
        pytest.skip("Debian's chromium is not installed (make browser installs it, as root)", allow_module_level=True)


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def sign_in(page, app, key: str) -> None:
    await page.goto(app.url)
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("textbox", name="Message").wait_for()


async def new_conversation(page) -> None:
    """Starts a conversation and waits until it is the one shown."""
    shown = await page.evaluate("location.hash")
    await page.get_by_role("button", name="New conversation", exact=True).click()
    await page.wait_for_function(
        "shown => location.hash !== shown && !!document.querySelector('#thread-assistant').textContent", arg=shown
    )


async def ask(page, text: str) -> None:
    await page.get_by_role("textbox", name="Message").fill(text)
    await page.get_by_role("textbox", name="Message").press("Enter")


async def last_answer_done(page):
    answer = page.locator(".message.assistant").last
    await page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('.message.assistant')].at(-1);"
        " return a && !a.hasAttribute('aria-busy'); }"
    )
    return answer
