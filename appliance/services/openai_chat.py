"""OpenAI-style chat completions, served by the same agent, runs and threads.

A conversation is a thread. A client names it (the ``X-Conversation-Id``
header, else Open WebUI's ``X-OpenWebUI-Chat-Id``); the thread then remembers
every turn, so the client may send only its new message. (The ``user`` field
names the person, as OpenAI's does, not a conversation: LibreChat sends the
same one for every chat of a user.) A client that sends the whole
history each time is understood too: what the thread already holds is not
added again, and a history that leaves the thread's (an edited or
regenerated message) continues from the checkpoint where the two last
agreed. Without a conversation the messages sent are the whole conversation,
answered on a thread of their own that is deleted afterwards. So is a
client's background task about a conversation (``side_tasks``), answered by
the model alone.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from appliance.agent.context import INSTRUCTIONS_MAX
from appliance.engine.events import START
from appliance.errors import Conflict, Invalid, NotFound, UnknownModel
from appliance.services.assistants import AssistantService
from appliance.services.runs import RunService, RunSpec, run_error
from appliance.services.side_tasks import is_side_task, may_quote, plain
from appliance.services.threads import ThreadService
from appliance.store.assistants import AssistantQuery, AssistantRecord
from appliance.store.checkpointer import thread_config
from appliance.store.runs import RunRecord
from appliance.store.threads import ThreadRecord

# The nodes whose tokens are the answer (the others think aloud or not at all).
ANSWER_NODES = {"respond", "verify", "act"}
# Conversation names become thread ids under this namespace, per tenant.
CONVERSATIONS = uuid.UUID("6f1c3f4e-9a53-5d0b-8a57-1f0b7d1c2e90")
# How far back a diverging history is looked for among the thread's checkpoints.
FORK_SEARCH_LIMIT = 500
SYSTEM_ROLES = {"system", "developer"}  # added to the assistant's instructions for their turn
# A side task is answered by the model alone: no document search, none of the assistant's own tools.
SIDE_TASK = {"knowledge_bases": [], "documents_only": False, "tools": []}


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]  # {"role", "content", ...} as the client sent them
    conversation: str | None = None
    end_user: str | None = None  # OpenAI's user: the person asking, kept in the run's metadata
    knowledge_bases: list[str] | None = None
    # The client's own functions ({name, description, parameters}), and how the model may call them.
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str = "auto"  # auto, none, required, function:NAME
    parallel_tool_calls: bool = True
    response_format: str = "text"  # text, json_object, json_schema
    response_schema: dict[str, Any] | None = None
    # The answer is streamed (False: the client hears only the whole answer, at the run's end).
    streamed: bool = False


@dataclass
class ChatAnswer:
    text: str | None
    # Calls of the client's tools the answer hands back: [{id, name, args}].
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    degraded: str | None = None  # why the search behind the answer was less than whole
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatTurn:
    """A completion under way: its run, and whether its thread is its own."""

    tenant: str
    run: RunRecord
    model: str
    stateless: bool
    sent: list[dict[str, Any]]
    answer: ChatAnswer | None = None  # once it has ended
    client_tools: set[str] = field(default_factory=set)  # the names of the client's own tools

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.run.run_id.hex}"

    @property
    def created(self) -> int:
        return int(self.run.created_at.timestamp())


class OpenAIChatService:
    def __init__(self, runs: RunService, threads: ThreadService, assistants: AssistantService) -> None:
        self.runs = runs
        self.threads = threads
        self.assistants = assistants

    async def models(self, tenant: str) -> list[AssistantRecord]:
        """The "models" a client may name: the tenant's assistants (the built-in one first), by name."""
        return await self.assistants.search(tenant, AssistantQuery(limit=1000, sort_by="name", descending=False))

    async def require_model(self, tenant: str, model: str) -> AssistantRecord:
        try:
            return await self.assistants.get(tenant, model)
        except NotFound:
            names = ", ".join(a.name for a in await self.models(tenant))
            raise UnknownModel(f"the model {model!r} does not exist here; GET /v1/models lists: {names}") from None

    # Starting ------------------------------------------------------------------

    async def start(self, tenant: str, request: ChatRequest, *, key_id: uuid.UUID | None) -> ChatTurn:
        """Check the request and queue its run; bad input is refused before anything is written."""
        assistant = str((await self.require_model(tenant, request.model)).assistant_id)
        sent, system = client_messages(request.messages), system_text(request.messages)
        chosen = {} if request.knowledge_bases is None else {"knowledge_bases": request.knowledge_bases}
        names = {t["name"] for t in request.tools}
        if request.tools or request.tool_choice != "auto":
            chosen |= {"client_tools": request.tools, "tool_choice": request.tool_choice,
                       "parallel_tool_calls": request.parallel_tool_calls}  # fmt: skip
        if request.response_format != "text":
            await self._enforceable(tenant, assistant, request.response_schema)
            chosen |= {"response_format": request.response_format, "response_schema": request.response_schema}
        thread_id, thread = None, None
        if request.conversation is not None:
            thread_id, thread = await self.conversation_thread(tenant, request.conversation)
        instructions = await self._with_system(tenant, assistant, request.model, system) if system else None
        side_task = await self._side_task(sent, thread_id if thread else None)
        if side_task:
            chosen |= SIDE_TASK
            if not sent:  # only system messages: their text is the task
                sent, instructions = [{"role": "user", "content": system}], None
        if instructions:
            chosen["instructions"] = instructions
        metadata = {"source": "openai"} | ({"user": request.end_user} if request.end_user else {})
        if thread_id is None or side_task:
            check_results(sent, set())
            spec = self._spec(assistant, sent, chosen, metadata, streamed=request.streamed)
            run = await self.runs.create_stateless(tenant, spec, key_id=key_id)
            return ChatTurn(tenant, run, request.model, stateless=True, sent=sent, client_tools=names)

        check_results(sent, await self._calls(thread_id) if thread else set())
        new, checkpoint_id = await self._continuation(thread_id if thread else None, sent)
        spec = self._spec(assistant, new, chosen, metadata, checkpoint_id, streamed=request.streamed)
        spec.if_not_exists = "create"
        thread_metadata = {"title": title_of(sent), "conversation": request.conversation, "source": "openai"}
        run = await self.runs.create(tenant, thread_id, spec, key_id=key_id, new_thread_metadata=thread_metadata)
        return ChatTurn(tenant, run, request.model, stateless=False, sent=new, client_tools=names)

    async def _side_task(self, sent: list[dict[str, Any]], existing: uuid.UUID | None) -> bool:
        """Whether the request is a client's background task about a conversation
        (``side_tasks``); ``existing``: the named conversation's thread, once it has one."""
        quoting = existing and len(sent) == 1 and sent[0]["role"] == "user" and may_quote(sent[0]["content"])
        history = await self._history(existing) if quoting else None
        return is_side_task(sent, history)

    async def _enforceable(self, tenant: str, assistant: str, schema: dict[str, Any] | None) -> None:
        """A 400 naming the schema when the assistant's model cannot be kept to it."""
        if schema is None:
            return
        settings = await self.assistants.settings_of(tenant, assistant)
        model = self.assistants.models.get(settings.model)
        if problem := model.unenforceable(schema):
            where = "response_format.json_schema.schema"
            raise Invalid(f"{where} cannot be enforced by the model {model.name}: {problem}", param=where)

    async def _with_system(self, tenant: str, assistant: str, model: str, system: str) -> str:
        """The assistant's instructions with the client's system messages after
        them, for this turn only; or a 400 where its administrator refused them."""
        settings = await self.assistants.settings_of(tenant, assistant)
        if settings.system_messages == "refuse":
            raise Invalid(
                f"the assistant {model!r} takes no system or developer messages (its administrator set its "
                f"instructions): leave them out",
                param="messages",
            )
        combined = f"{settings.instructions}\n\n{system}"
        if len(combined) > INSTRUCTIONS_MAX:
            raise Invalid(
                f"the system messages make the instructions {len(combined)} characters long, over "
                f"{INSTRUCTIONS_MAX}: shorten them",
                param="messages",
            )
        return combined

    async def conversation_thread(self, tenant: str, conversation: str) -> tuple[uuid.UUID, ThreadRecord | None]:
        """The conversation's thread id, and its record if it exists yet: the
        tenant's own thread when the conversation names one, else one derived from the name."""
        with contextlib.suppress(ValueError):
            named = uuid.UUID(conversation)
            if (thread := await self.threads.store.get(tenant, named)) is not None:
                return named, thread
        thread_id = uuid.uuid5(CONVERSATIONS, f"{tenant}\n{conversation}")
        return thread_id, await self.threads.store.get(tenant, thread_id)

    async def _continuation(
        self, thread_id: uuid.UUID | None, sent: list[dict[str, str]]
    ) -> tuple[list[dict[str, str]], str | None]:
        """What of ``sent`` the thread lacks, and the checkpoint to go on from (None: its latest)."""
        prior, new = split_new(sent)
        if not prior:
            return new, None  # only the new message: the thread remembers the rest
        if thread_id is None or not (history := await self._history(thread_id)):
            return sent, None  # a new conversation, brought with its history
        if same_turns(prior, history):
            return new, None
        async for snapshot in self.threads.graph.aget_state_history(thread_config(thread_id), limit=FORK_SEARCH_LIMIT):
            if snapshot.next:
                continue
            if same_turns(prior, turns_of(await self.threads.conversation(thread_id, snapshot.values))):
                return new, snapshot.config["configurable"]["checkpoint_id"]
        raise Conflict(
            "the history sent differs from this conversation's at a point it never had; send only the new "
            "message, or start a new conversation (another X-Conversation-Id)"
        )

    async def _calls(self, thread_id: uuid.UUID) -> set[str]:
        """The ids of every tool call the thread's answers made."""
        snapshot = await self.threads.graph.aget_state(thread_config(thread_id))
        messages = snapshot.values.get("messages", [])
        return {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}

    async def _history(self, thread_id: uuid.UUID) -> list[dict[str, str]]:
        """The whole conversation as its client saw it, archived turns too."""
        snapshot = await self.threads.graph.aget_state(thread_config(thread_id))
        return turns_of(await self.threads.conversation(thread_id, snapshot.values))

    @staticmethod
    def _spec(
        assistant_id: str,
        messages: list[dict[str, str]],
        context: dict[str, Any],
        metadata: dict[str, str],
        checkpoint_id: str | None = None,
        *,
        streamed: bool,
    ) -> RunSpec:
        """The turn's run. Its knowledge bases: the request's own choice, else the
        one rule every client follows (the conversation's, else its assistant's).
        A client waiting for the whole answer hears of the run only at its end."""
        return RunSpec(
            assistant_id=assistant_id,
            input={"messages": messages},
            metadata=metadata,
            context=context,
            stream_mode=["messages-tuple"],
            checkpoint_id=checkpoint_id,
            announced=streamed,
        )

    # Answering -----------------------------------------------------------------

    async def answer(self, turn: ChatTurn) -> ChatAnswer:
        """Wait for the turn to end: its answer, citations and token counts."""
        values = await self.runs.join(turn.tenant, turn.run.thread_id, turn.run.run_id, created=True)
        reply = next((m for m in reversed(values.get("messages", [])) if m.get("type") == "ai"), None)
        if reply is None:
            raise Conflict("the conversation ended without an answer; ask again")
        text = str(reply.get("content") or "")
        usage = reply.get("usage_metadata") or {}
        count = self.runs.policy.count_tokens
        metadata = reply.get("response_metadata") or {}
        handed_back = [c for c in reply.get("tool_calls") or [] if c["name"] in turn.client_tools]
        return ChatAnswer(
            text=text if text or not handed_back else None,
            tool_calls=handed_back,
            citations=metadata.get("citations", []),
            degraded=metadata.get("degraded"),
            prompt_tokens=usage.get("input_tokens") or sum(count(m["content"]) for m in turn.sent),
            completion_tokens=usage.get("output_tokens") or count(text or json.dumps(handed_back)),
        )

    async def deltas(self, turn: ChatTurn) -> AsyncIterator[str]:
        """The answer's text as it is written, piece by piece. What the final
        answer adds after the streamed tokens (a citation marker, a refusal
        written without the model) comes last."""
        streamed = []
        async for event in self.runs.follow(turn.run, START):
            if event.event == "error":
                raise run_error(json.loads(event.data))
            if event.event != "messages":
                continue
            chunk, meta = json.loads(event.data)
            text = chunk.get("content")
            if meta.get("langgraph_node") in ANSWER_NODES and isinstance(text, str) and text:
                streamed.append(text)
                yield text
        turn.answer = await self.answer(turn)
        final, so_far = turn.answer.text or "", "".join(streamed)
        if final.startswith(so_far) and len(final) > len(so_far):
            yield final[len(so_far) :]

    async def finish(self, turn: ChatTurn) -> None:
        """After the answer: a stateless turn's thread is removed."""
        if turn.stateless:
            await self.runs.discard_stateless(turn.run)

    async def abandon(self, turn: ChatTurn) -> None:
        """The client left a stream before the answer: undo the turn, as a run stream does."""
        await self.runs.stop(turn.run, "rollback")


def client_messages(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The client's messages as the agent takes them: user and assistant turns
    with text, the client's tool calls and their results. System messages are
    instructions (``system_text``), not turns. A tool result must answer a call
    made before it in the messages sent (or by the thread). Only system
    messages are a client's task (``side_tasks``): no turns at all."""
    kept: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        role = message.get("role")
        if role in SYSTEM_ROLES:
            continue
        if role not in ("user", "assistant", "tool"):
            raise Invalid(f"messages[{i}].role {role!r} is not supported", param="messages")
        content = message.get("content")
        text = "" if content is None and role == "assistant" else content_text(content, i)
        if role == "tool":
            kept.append({"role": "tool", "content": text, "tool_call_id": message["tool_call_id"]})
        elif role == "assistant" and message.get("tool_calls"):
            calls = [{"id": c["id"], "name": c["function"]["name"], "args": arguments_of(c, i)}
                     for c in message["tool_calls"]]  # fmt: skip
            kept.append({"role": "assistant", "content": text, "tool_calls": calls})
        elif role == "assistant" and not text.strip():
            continue  # an answer without text says nothing; the agent never gave one
        else:
            kept.append({"role": role, "content": text})
    only_system = not kept and any(m.get("role") in SYSTEM_ROLES for m in raw)
    if not only_system and (not kept or kept[-1]["role"] not in ("user", "tool")):
        raise Invalid(
            "the last message must be the user's (the question to answer) or a tool's result", param="messages"
        )
    return kept


def arguments_of(call: dict[str, Any], index: int) -> dict[str, Any]:
    try:
        arguments = json.loads(call["function"]["arguments"] or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise Invalid(
            f"messages[{index}].tool_calls: the arguments of {call['function']['name']} are not a JSON object",
            param="messages",
        )
    return arguments


def check_results(sent: list[dict[str, Any]], thread_calls: set[str]) -> None:
    """Every tool result answers a call: one made earlier in ``sent``, or by the thread."""
    called = set(thread_calls)
    for i, message in enumerate(sent):
        called |= {c["id"] for c in message.get("tool_calls", [])}
        if message["role"] == "tool" and message["tool_call_id"] not in called:
            raise Invalid(
                f"a tool message's tool_call_id {message['tool_call_id']!r} answers no call of the assistant",
                param=f"messages[{i}].tool_call_id",
            )


def system_text(raw: list[dict[str, Any]]) -> str:
    """The text of the system and developer messages, in order."""
    texts = [content_text(m.get("content"), i) for i, m in enumerate(raw) if m.get("role") in SYSTEM_ROLES]
    return "\n\n".join(t.strip() for t in texts if t.strip())


def content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise Invalid(
                    f"messages[{index}].content has a {kind!r} part; only text parts are supported", param="messages"
                )
            parts.append(part["text"])
        return "\n".join(parts)
    raise Invalid(f"messages[{index}].content must be text", param="messages")


def split_new(sent: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(the turns before the last answer, the user messages after it)."""
    last_answer = max((i for i, m in enumerate(sent) if m["role"] == "assistant"), default=-1)
    return sent[: last_answer + 1], sent[last_answer + 1 :]


def turns_of(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """The thread's messages as its client saw them: its questions, the
    answers, the calls of its own tools and their results; not the calls the
    appliance made of its own tools (their results carry an ``artifact``)."""
    own = {m.tool_call_id for m in messages if isinstance(m, ToolMessage) and m.artifact is not None}
    seen = []
    for m in messages:
        if isinstance(m, HumanMessage):
            seen.append({"role": "user", "content": m.text})
        elif isinstance(m, AIMessage) and (m.text or any(c["id"] not in own for c in m.tool_calls)):
            seen.append({"role": "assistant", "content": m.text})
        elif isinstance(m, ToolMessage) and m.tool_call_id not in own:
            seen.append({"role": "tool", "content": m.text})
    return seen


def same_turns(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    """The same conversation, whatever the citation markers and spacing (clients re-render answers)."""
    return len(a) == len(b) and all(x["role"] == y["role"] and plain(x["content"]) == plain(y["content"])
                                    for x, y in zip(a, b, strict=True))  # fmt: skip


def title_of(sent: list[dict[str, str]]) -> str:
    first = next((m["content"] for m in sent if m["role"] == "user"), "") or "Conversation"
    words = " ".join(first.split())
    return words if len(words) <= 60 else words[:57].rstrip() + "…"
