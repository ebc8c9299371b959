"""``appliance chat`` holds a conversation with a running appliance."""

from __future__ import annotations

import asyncio
import sys


def conversation_of(output: str) -> str:
    """The thread id the chat prints when it starts: "conversation ID with ASSISTANT"."""
    return output.split("conversation ", 1)[1].split()[0]


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
    thread_id = conversation_of(text)
    assert f"conversation {thread_id} with agent." in text
    assert text.count("assistant> reply-") == 2
    state = (await scripted_app.client.get(f"/threads/{thread_id}/state")).json()
    assert [m["content"] for m in state["values"]["messages"] if m["type"] == "human"] == ["first line", "second line"]


def test_chat_in_process_uses_the_embedded_default_and_remembers_the_thread(tmp_path):
    import subprocess

    env = {"PATH": "", "APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_MAX_ANSWER_TOKENS": "24"}
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", "chat"],
        input="Hello there\nAnd again\n/quit\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("assistant> ") == 2
    thread_id = conversation_of(result.stdout)
    # The same conversation continues from the CLI after the process ended.
    resumed = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", "chat", "--thread", thread_id],
        input="/quit\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"conversation {thread_id} with agent (4 earlier messages)" in resumed.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", "chat", "--thread", "00000000-0000-0000-0000-000000000000"],
        input="/quit\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode == 2 and "not found" in unknown.stderr


async def chat_process(app, tmp_path, *args: str, typed: bytes = b"/quit\n") -> tuple[int, str, str]:
    key_file = tmp_path / "key"
    key_file.write_text(app.admin_key + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli.main", "chat", "--url", app.url, "--key-file", str(key_file), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "", "APPLIANCE_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(typed), 120)
    return process.returncode, out.decode(), err.decode()


async def test_a_new_conversation_uses_the_named_knowledge_bases_or_its_assistants(scripted_app, tmp_path):
    from tests.support.turns import new_kb

    manuals, policies = await new_kb(scripted_app.client, "manuals"), await new_kb(scripted_app.client, "policies")

    async def metadata_of(output: str) -> dict:
        return (await scripted_app.client.get(f"/threads/{conversation_of(output)}")).json()["metadata"]

    code, out, err = await chat_process(scripted_app, tmp_path, "--knowledge-base", "manuals")
    assert code == 0, err
    assert (await metadata_of(out))["knowledge_bases"] == [manuals]
    code, out, err = await chat_process(scripted_app, tmp_path, "-k", "manuals", "-k", policies)
    assert code == 0, err
    assert (await metadata_of(out))["knowledge_bases"] == [manuals, policies]
    # Without -k, the conversation has no choice of its own: its assistant's applies, as in the web chat.
    code, out, err = await chat_process(scripted_app, tmp_path)
    assert code == 0, err
    assert "knowledge_bases" not in await metadata_of(out)
    code, out, err = await chat_process(scripted_app, tmp_path, "-k", "nosuch")
    assert code == 2 and "no knowledge base named 'nosuch'" in err and "manuals" in err


async def test_chat_talks_to_the_assistant_named(scripted_app, tmp_path):
    created = await scripted_app.client.post(
        "/assistants", json={"graph_id": "agent", "name": "terse", "context": {"instructions": "Be terse."}}
    )
    assert created.status_code == 200, created.text
    code, out, err = await chat_process(scripted_app, tmp_path, "--assistant", "terse", typed=b"hello\n/quit\n")
    assert code == 0, err
    assert f"conversation {conversation_of(out)} with terse." in out
    assert (await metadata_of_thread(scripted_app, conversation_of(out)))["assistant_id"] == created.json()[
        "assistant_id"
    ]
    # The run used the assistant's instructions: the model's prompt began with them.
    assert scripted_app.chat.answer_prompts()[-1][0].text == "Be terse."
    code, out, err = await chat_process(scripted_app, tmp_path, "-a", "nobody")
    assert code == 2 and "no assistant 'nobody'" in err


async def metadata_of_thread(app, thread_id: str) -> dict:
    return (await app.client.get(f"/threads/{thread_id}")).json()["metadata"]
