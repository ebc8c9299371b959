"""``appliance chat`` holds a conversation with a running appliance."""

from __future__ import annotations

import asyncio
import sys


async def test_chat_streams_answers_and_keeps_one_thread(scripted_app, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(scripted_app.admin_key + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliance.cli.main",
        "chat",
        "--url",
        scripted_app.url,
        "--key-file",
        str(key_file),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "", "APPLIANCE_DATA_DIR": str(tmp_path)},
    )
    out, err = await asyncio.wait_for(process.communicate(b"first line\nsecond line\n/quit\n"), 120)
    text = out.decode()
    assert process.returncode == 0, err.decode()
    thread_id = text.split("conversation ", 1)[1].split(".", 1)[0]
    assert text.count("assistant> reply-") == 2
    state = (await scripted_app.client.get(f"/threads/{thread_id}/state")).json()
    assert [m["content"] for m in state["values"]["messages"] if m["type"] == "human"] == ["first line", "second line"]
