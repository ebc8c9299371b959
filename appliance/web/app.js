// The web chat. No build step: it speaks the appliance's own API (threads,
// runs, knowledge bases), with the API key kept in this browser tab's session
// storage and sent as a header, never in a URL. Answers render as Markdown
// through two vendored, pinned files (web/vendor/SOURCE.txt): marked, and
// DOMPurify (loaded by index.html as the global DOMPurify).

import { Marked } from "./marked.esm.js";

const KEY_STORAGE = "appliance.api-key";
const NEW_BASE = "";  // the upload target meaning "a new knowledge base"
const EARLIER_PAGE = 100;  // archived messages fetched per "Show earlier messages"
// Nodes whose tokens are the answer; the others are shown as progress.
const ANSWER_NODES = new Set(["respond", "verify", "act"]);
const FINAL_NODES = new Set(["respond", "verify", "refuse", "act"]);
const STEPS = {
  fold_history: "Summarising earlier turns…",
  plan: "Deciding whether your documents are needed…",
  retrieve: "Searching the documents…",
  grade: "Checking what was found…",
  rewrite: "Rephrasing the search…",
  generate: "Writing the answer from the sources…",
  verify: "Checking the answer against the sources…",
  refuse: "The documents do not cover this.",
  act: "Thinking…",
  call_tools: "Using a tool…",
};

const $ = (selector) => document.querySelector(selector);
const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  threads: [],
  bases: [],
  assistants: [],  // the tenant's, the built-in "agent" first
  thread: null,   // the open conversation: {thread_id, metadata}
  running: null,  // the answer being written: {threadId, runId}
  opening: 0,     // counts conversations asked to open
  first: 0,       // position in the whole conversation of the first message shown
  saving: Promise.resolve(),  // knowledge-base choices, saved in the order made
  renaming: null, // the conversation whose title is being typed
};

// The API ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(path, { method = "GET", body } = {}) {
  const headers = { "x-api-key": state.key };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await apiError(response);
  return response;
}

async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

async function apiError(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    detail = (await response.json()).detail || detail;
  } catch { /* not JSON: keep the status line */ }
  if (response.status === 401 && state.key) signOut(detail);
  return new ApiError(response.status, detail);
}

// Server-Sent Events from a fetch body (EventSource cannot POST or send headers).
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) yield { event, data: JSON.parse(data) };  // comments (heartbeats) carry no data
    }
  }
}

// Signing in and out -----------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const key = $("#key").value.trim();
  state.key = key;
  try {
    await api("/threads/search", { method: "POST", body: { limit: 1, select: ["thread_id"] } });
  } catch (error) {
    state.key = null;
    $("#signin-error").textContent = error.status === 401
      ? "That key was not accepted. Check it with your administrator." : error.message;
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $("#key").value = "";
  $("#signin-error").textContent = "";
  await enter();
}

function signOut(reason) {
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  $("#app").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = typeof reason === "string" ? reason : "";
  $("#key").focus();
}

async function enter() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  await Promise.all([loadThreads(), loadBases(), loadAssistants()]);
  const wanted = location.hash.match(/^#\/c\/([0-9a-f-]{36})$/);
  const thread = state.threads.find((t) => wanted && t.thread_id === wanted[1]) || state.threads[0];
  if (thread) await openThread(thread.thread_id);
  else showThread(null);
  $("#prompt").focus();
}

// Conversations ----------------------------------------------------------

function titleOf(thread) {
  return thread?.metadata?.title || "New conversation";
}

async function loadThreads() {
  const threads = await api("/threads/search", {
    method: "POST",
    body: { limit: 200, sort_by: "updated_at", sort_order: "desc", select: ["thread_id", "metadata", "updated_at"] },
  });
  state.threads = threads.filter((t) => !t.metadata?.stateless);
  renderThreads();
}

function renderThreads() {
  // A title being typed is not swept away by a refresh of the list; its end draws the list.
  if (state.renaming) return;
  const list = $("#conversations");
  list.replaceChildren(...state.threads.map((thread) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#/c/${thread.thread_id}`;
    link.textContent = titleOf(thread);
    if (state.thread?.thread_id === thread.thread_id) link.setAttribute("aria-current", "page");
    const rename = button("✎", `Rename “${titleOf(thread)}”`, () => startRename(item, thread));
    const remove = button("✕", `Delete “${titleOf(thread)}”`, () => deleteThread(thread));
    item.append(link, rename, remove);
    return item;
  }));
}

function button(text, label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", onClick);
  return element;
}

async function newThread() {
  // The conversation keeps the assistant chosen now, and its knowledge bases
  // until the user ticks others under Knowledge.
  const assistant_id = $("#assistant").value;
  const thread = await api("/threads", {
    method: "POST", body: { metadata: { title: "New conversation", assistant_id } },
  });
  state.threads.unshift(thread);
  state.opening += 1;  // a conversation still loading must not replace this one
  history.replaceState(null, "", `#/c/${thread.thread_id}`);
  showThread(thread, []);
  $("#prompt").focus();
}

async function openThread(threadId) {
  // Only the latest of several quick clicks may show its conversation.
  const ticket = ++state.opening;
  const [thread, threadState] = await Promise.all([
    api(`/threads/${threadId}`), api(`/threads/${threadId}/state`),
  ]);
  if (ticket !== state.opening) return;
  if (location.hash !== `#/c/${threadId}`) history.replaceState(null, "", `#/c/${threadId}`);
  const pending = (threadState.tasks || []).flatMap((t) => t.interrupts || []).map((i) => i.value)
    .filter((value) => value?.type === "tool_approval");
  // The state holds the latest turns; older ones are archived, shown on request.
  showThread(thread, threadState.values.messages || [], pending, threadState.values.archived || 0);
}

function showThread(thread, messages = [], pending = [], archived = 0) {
  state.thread = thread;
  state.first = archived;  // where the messages shown begin in the whole conversation
  $("#title").textContent = titleOf(thread);
  const assistant = assistantOf(thread);
  $("#thread-assistant").textContent = thread ? `with ${assistant?.name || "an assistant since deleted"}` : "";
  $("#messages").replaceChildren();
  const bubble = renderMessages(messages);
  for (const request of pending) askApproval(bubble || addMessage("assistant", ""), request);
  offerEarlier();
  $("#empty").hidden = messages.length > 0 || archived > 0;
  renderThreads();
  renderBases();
  scrollToEnd();
}

// Appends messages as bubbles; returns the last answer's bubble, if the last turn has one.
function renderMessages(messages) {
  let bubble = null;  // one bubble a turn: its tool calls, then its answer
  for (const message of messages) {
    if (message.type === "human") {
      addMessage("user", message.content);
      bubble = null;
    } else if (message.type === "ai") {
      bubble ||= addMessage("assistant", "");
      for (const call of message.tool_calls || []) showToolCall(bubble, call);
      if (!message.tool_calls?.length || message.content) {
        renderAnswer(bubble, message.content, message.response_metadata?.citations || []);
      }
    } else if (message.type === "tool" && bubble) showToolResult(bubble, message);
  }
  return bubble;
}

function offerEarlier() {
  $("#messages > .earlier")?.remove();
  if (!state.thread || state.first <= 0) return;
  const item = document.createElement("li");
  item.className = "earlier";
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = `Show earlier messages (${state.first})`;
  button.addEventListener("click", () => showEarlier(button));
  item.append(button);
  $("#messages").prepend(item);
}

async function showEarlier(button) {
  const thread = state.thread;
  button.disabled = true;
  const page = await api(`/threads/${thread.thread_id}/messages?before=${state.first}&limit=${EARLIER_PAGE}`);
  if (state.thread !== thread) return;
  const list = $("#messages");
  const shown = [...list.children].filter((item) => !item.classList.contains("earlier"));
  const height = list.scrollHeight;
  list.replaceChildren();
  renderMessages(page.messages);
  list.append(...shown);
  state.first = page.first;
  offerEarlier();
  list.scrollTop += list.scrollHeight - height;  // the view stays on what was read
}

function startRename(item, thread) {
  const input = document.createElement("input");
  input.value = titleOf(thread);
  input.setAttribute("aria-label", "New title");
  item.replaceChildren(input);
  input.focus();
  input.select();
  state.renaming = thread.thread_id;
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    state.renaming = null;
    const title = input.value.trim();
    if (save && title && title !== titleOf(thread)) await setMetadata(thread.thread_id, { title });
    renderThreads();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

async function setMetadata(threadId, metadata) {
  const updated = await api(`/threads/${threadId}`, { method: "PATCH", body: { metadata } });
  const index = state.threads.findIndex((t) => t.thread_id === threadId);
  if (index >= 0) state.threads[index] = { ...state.threads[index], metadata: updated.metadata };
  if (state.thread?.thread_id === threadId) {
    state.thread = { ...state.thread, metadata: updated.metadata };
    $("#title").textContent = titleOf(state.thread);
  }
  renderThreads();
}

async function deleteThread(thread) {
  if (!confirm(`Delete “${titleOf(thread)}” and its whole history?`)) return;
  try {
    await api(`/threads/${thread.thread_id}`, { method: "DELETE" });
  } catch (error) {
    return notify(error.message);
  }
  state.threads = state.threads.filter((t) => t.thread_id !== thread.thread_id);
  if (state.thread?.thread_id === thread.thread_id) {
    history.replaceState(null, "", location.pathname);
    if (state.threads[0]) await openThread(state.threads[0].thread_id);
    else showThread(null);
  } else renderThreads();
}

// Messages and answers ---------------------------------------------------

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  $("#messages").append(item);
  $("#empty").hidden = true;
  return item;
}

function locator(citation) {
  const parts = [citation.source];
  if (citation.page != null) parts.push(`page ${citation.page}`);
  if (citation.heading) parts.push(`section “${citation.heading}”`);
  return parts.join(", ");
}

// Markdown with raw HTML shown as text, never parsed: an answer can quote
// markup but not inject it. DOMPurify then removes anything active that
// Markdown itself can produce (javascript: links, event attributes).
const markdown = new Marked({ gfm: true, breaks: true });
markdown.use({
  renderer: { html: ({ text }) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;") },
});

function renderMarkdown(text) {
  const html = DOMPurify.sanitize(markdown.parse(text), { USE_PROFILES: { html: true } });
  const template = document.createElement("template");
  template.innerHTML = html;
  for (const link of template.content.querySelectorAll("a")) link.rel = "noopener noreferrer";
  return template.content;
}

// The answer as Markdown, its [n] markers as buttons that open the cited
// passage, and the list of its sources.
function renderAnswer(bubble, text, citations) {
  const body = bubble.querySelector(".text");
  const byIndex = new Map(citations.map((c) => [c.index, c]));
  const content = renderMarkdown(text);
  const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) if (!walker.currentNode.parentElement?.closest("code, pre")) texts.push(walker.currentNode);
  for (const node of texts) {
    node.replaceWith(...node.data.split(/(\[\d{1,2}\])/).map((part) => {
      const marker = part.match(/^\[(\d{1,2})\]$/);
      const citation = marker && byIndex.get(Number(marker[1]));
      if (!citation) return document.createTextNode(part);
      const cite = button(part, `Source ${citation.index}: ${locator(citation)}`, () => openPassage(citation));
      cite.className = "cite";
      return cite;
    }));
  }
  body.classList.add("markdown");
  body.replaceChildren(content);
  bubble.querySelector(".sources")?.remove();
  if (!citations.length) return;
  const sources = document.createElement("ol");
  sources.className = "sources";
  sources.setAttribute("aria-label", "Sources");
  for (const citation of citations) {
    const item = document.createElement("li");
    item.value = citation.index;
    item.append(button(locator(citation), `Open source ${citation.index}: ${locator(citation)}`,
      () => openPassage(citation)));
    sources.append(item);
  }
  bubble.append(sources);
}

function openPassage(citation) {
  $("#passage-title").textContent = `[${citation.index}] ${citation.title || citation.source}`;
  $("#passage-where").textContent = locator(citation);
  // The sentences that support the answer are marked, and the first scrolled to.
  const text = citation.text || "";
  const parts = [];
  let at = 0;
  for (const { start, end } of [...(citation.spans || [])].sort((a, b) => a.start - b.start)) {
    if (start < at || end > text.length || end <= start) continue;
    parts.push(document.createTextNode(text.slice(at, start)));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(start, end);
    parts.push(mark);
    at = end;
  }
  parts.push(document.createTextNode(text.slice(at)));
  $("#passage-text").replaceChildren(...parts);
  $("#passage").showModal();
  $("#passage-text mark")?.scrollIntoView({ block: "center" });
}

function setProgress(bubble, text) {
  let line = bubble.querySelector(".progress");
  if (!line) {
    line = document.createElement("p");
    line.className = "progress";
    line.setAttribute("role", "status");
    bubble.insertBefore(line, bubble.querySelector(".text"));
  }
  line.textContent = text;
  line.hidden = !text;
}

async function send(event) {
  event.preventDefault();
  const text = $("#prompt").value.trim();
  if (!text || state.running) return;
  state.opening += 1;  // the message goes to the conversation on screen; nothing may replace it now
  if (!state.thread) await newThread();
  const thread = state.thread;
  $("#prompt").value = "";
  addMessage("user", text);
  if (titleOf(thread) === "New conversation") {
    setMetadata(thread.thread_id, { title: shorten(text) }).catch(() => {});
  }
  const bubble = addMessage("assistant", "");
  await runTurn(thread, bubble, { input: { messages: [{ role: "user", content: text }] } });
}

// One run of the conversation, streamed into ``bubble``: a new message, or a
// person's answer to a tool call that waits for approval (``command.resume``).
async function runTurn(thread, bubble, body) {
  bubble.setAttribute("aria-busy", "true");
  setProgress(bubble, "Thinking…");
  setRunning({ threadId: thread.thread_id, runId: null });
  let written = "";
  let final = null;
  let stopped = false;
  try {
    await state.saving;  // knowledge chosen just before is what this message is answered from
    const response = await request(`/threads/${thread.thread_id}/runs/stream`, {
      method: "POST",
      body: {
        ...body,
        stream_mode: ["messages-tuple", "custom", "updates"],
        multitask_strategy: "reject",
        // The answer is kept even if this tab closes; Stop cancels it explicitly.
        on_disconnect: "continue",
      },
    });
    for await (const { event: kind, data } of events(response)) {
      if (kind === "metadata") state.running.runId = data.run_id;
      else if (kind === "custom" && data.node) setProgress(bubble, STEPS[data.node] || "");
      else if (kind === "messages") {
        const [chunk, meta] = data;
        if (ANSWER_NODES.has(meta.langgraph_node) && typeof chunk.content === "string" && chunk.content) {
          written += chunk.content;
          bubble.querySelector(".text").textContent = written;
          setProgress(bubble, "");
          scrollToEnd();
        }
      } else if (kind === "updates") {
        const [node, update] = Object.entries(data)[0] || [];
        if (node === "__interrupt__") {
          for (const pause of update) if (pause.value?.type === "tool_approval") askApproval(bubble, pause.value);
          continue;
        }
        const message = update?.messages?.at(-1);
        if (node === "act" && message?.tool_calls?.length) {
          // The model's text so far led to tool calls: the answer comes after them.
          for (const call of message.tool_calls) showToolCall(bubble, call);
          written = "";
          bubble.querySelector(".text").textContent = "";
        } else if (node === "call_tools") {
          for (const result of update.messages || []) showToolResult(bubble, result);
        } else if (FINAL_NODES.has(node) && message) final = message;
      } else if (kind === "error") {
        // A stopped answer ends with "interrupted": what was written stays on screen.
        if (data.error === "interrupted") stopped = true;
        else throw new ApiError(data.status || 500, data.message || "the answer failed");
      }
    }
    setProgress(bubble, "");
    if (final) renderAnswer(bubble, final.content, final.response_metadata?.citations || []);
    else if (stopped) setProgress(bubble, "Stopped.");
  } catch (error) {
    setProgress(bubble, "");
    const line = document.createElement("p");
    line.className = "error";
    line.setAttribute("role", "alert");
    line.textContent = error.message;
    bubble.append(line);
  } finally {
    bubble.removeAttribute("aria-busy");
    setRunning(null);
    scrollToEnd();
    loadThreads().catch(() => {});
  }
}

// Tool calls ----------------------------------------------------------------

// A call, collapsed by default: its name, then its arguments and result when opened.
function showToolCall(bubble, call) {
  if (bubble.querySelector(`.tool-call[data-id="${CSS.escape(call.id)}"]`)) return;
  const block = document.createElement("details");
  block.className = "tool-call";
  block.dataset.id = call.id;
  const summary = document.createElement("summary");
  summary.textContent = `Tool: ${call.name}`;
  const args = document.createElement("pre");
  args.className = "tool-args";
  args.textContent = JSON.stringify(call.args, null, 2);
  block.append(summary, args);
  bubble.insertBefore(block, bubble.querySelector(".text"));
}

function showToolResult(bubble, message) {
  const block = bubble.querySelector(`.tool-call[data-id="${CSS.escape(message.tool_call_id)}"]`);
  if (!block) return;
  const outcome = message.artifact?.outcome || (message.status === "error" ? "failed" : "done");
  block.dataset.outcome = message.status === "error" ? "failed" : outcome;
  block.querySelector("summary").textContent = `Tool: ${message.name} (${block.dataset.outcome})`;
  block.querySelector(".tool-result")?.remove();
  const result = document.createElement("pre");
  result.className = "tool-result";
  result.textContent = message.content;
  block.append(result);
}

// A call that waits for a person: Approve, Edit (the arguments, as JSON) or Reject.
function askApproval(bubble, request) {
  const call = request.tool_call;
  showToolCall(bubble, call);
  bubble.querySelector(".approval")?.remove();
  const box = document.createElement("div");
  box.className = "approval";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `Approve the call of ${call.name}`);
  const question = document.createElement("p");
  question.textContent = `The assistant wants to call ${call.name}` +
    (request.server ? ` on ${request.server}` : "") + ". Allow it?";
  const args = document.createElement("textarea");
  args.className = "approval-args";
  args.setAttribute("aria-label", "Arguments (JSON)");
  args.value = JSON.stringify(call.args, null, 2);
  args.readOnly = true;
  const problem = document.createElement("p");
  problem.className = "error";
  problem.textContent = request.problem || "";
  problem.hidden = !request.problem;
  const answer = (resume) => {
    box.remove();
    runTurn(state.thread, bubble, { command: { resume } });
  };
  const edit = button("Edit", `Edit the arguments of ${call.name}`, () => {
    if (args.readOnly) {
      args.readOnly = false;
      args.focus();
      edit.textContent = "Send edited";
      return;
    }
    let edited;
    try {
      edited = JSON.parse(args.value);
    } catch {
      problem.textContent = "The arguments must be JSON, such as {\"title\": \"...\"}.";
      problem.hidden = false;
      return;
    }
    answer({ action: "edit", args: edited });
  });
  box.append(
    question, args, problem,
    button("Approve", `Approve the call of ${call.name}`, () => answer({ action: "approve" })),
    edit,
    button("Reject", `Reject the call of ${call.name}`, () => answer({ action: "reject" })),
  );
  bubble.append(box);
  scrollToEnd();
}

function shorten(text) {
  const words = text.split(/\s+/).join(" ");
  return words.length <= 60 ? words : `${words.slice(0, 57).trimEnd()}…`;
}

function setRunning(running) {
  state.running = running;
  $("#send").hidden = Boolean(running);
  $("#stop").hidden = !running;
  if (!running) $("#prompt").focus();
}

async function stop() {
  const running = state.running;
  if (!running?.runId) return;
  try {
    await api(`/threads/${running.threadId}/runs/${running.runId}/cancel?action=interrupt`, { method: "POST" });
  } catch (error) {
    if (error.status !== 409) notify(error.message);  // 409: it had just ended
  }
}

// Assistants ---------------------------------------------------------------

async function loadAssistants() {
  state.assistants = await api("/assistants/search", {
    method: "POST", body: { limit: 1000, sort_by: "name", sort_order: "asc" },
  });
  const select = $("#assistant");
  const previous = select.value;
  select.replaceChildren(...state.assistants.map((a) => new Option(a.name, a.assistant_id)));
  if (state.assistants.some((a) => a.assistant_id === previous)) select.value = previous;
}

// The conversation's assistant: the one it was started with (older ones: the built-in).
function assistantOf(thread) {
  const id = thread?.metadata?.assistant_id;
  return id ? state.assistants.find((a) => a.assistant_id === id) : state.assistants[0];
}

// Knowledge bases and uploads ---------------------------------------------

async function loadBases() {
  state.bases = await api("/knowledge-bases");
  renderBases();
}

// The conversation's own choice, else its assistant's ("*": every one).
function chosenBases() {
  const own = state.thread?.metadata?.knowledge_bases;
  if (own) return own;
  const ofAssistant = assistantOf(state.thread)?.context?.knowledge_bases || ["*"];
  return ofAssistant.includes("*") ? state.bases.map((b) => b.knowledge_base_id) : ofAssistant;
}

function renderBases() {
  $("#bases").replaceChildren(...state.bases.map((base) => {
    const item = document.createElement("li");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = base.knowledge_base_id;
    box.disabled = !state.thread;
    box.addEventListener("change", () => chooseBase(base.knowledge_base_id, box.checked));
    label.append(box, ` ${base.name}`);
    item.append(label);
    return item;
  }));
  showChosenBases();
  $("#no-bases").hidden = state.bases.length > 0;
  const select = $("#upload-base");
  const previous = select.value;
  select.replaceChildren(
    ...state.bases.map((b) => new Option(b.name, b.knowledge_base_id)),
    new Option("A new knowledge base…", NEW_BASE),
  );
  select.value = state.bases.some((b) => b.knowledge_base_id === previous) ? previous : select.options[0].value;
  showNewBaseName();
}

function showNewBaseName() {
  const isNew = $("#upload-base").value === NEW_BASE;
  $("#new-base-name").hidden = !isNew;
  $("#new-base-label").hidden = !isNew;
}

// Ticks the boxes in place: the one just clicked stays the element the user holds.
function showChosenBases() {
  const chosen = new Set(chosenBases());
  for (const box of $("#bases").querySelectorAll("input[type=checkbox]")) box.checked = chosen.has(box.value);
  $("#toggle-knowledge").textContent = `Knowledge (${state.bases.filter((b) => chosen.has(b.knowledge_base_id)).length})`;
}

// The choice is the conversation's at once, so a second quick click builds on
// the first instead of on what the server has not answered yet.
function chooseBase(baseId, on) {
  if (!state.thread) return state.saving;
  const chosen = new Set(chosenBases());
  if (on) chosen.add(baseId);
  else chosen.delete(baseId);
  const threadId = state.thread.thread_id;
  const knowledge_bases = [...chosen];
  state.thread = { ...state.thread, metadata: { ...state.thread.metadata, knowledge_bases } };
  const listed = state.threads.find((t) => t.thread_id === threadId);
  if (listed) listed.metadata = { ...listed.metadata, knowledge_bases };
  showChosenBases();
  const body = { metadata: { knowledge_bases } };
  state.saving = state.saving
    .then(() => api(`/threads/${threadId}`, { method: "PATCH", body }))
    .catch((error) => notify(error.message));
  return state.saving;
}

async function upload(event) {
  event.preventDefault();
  const files = [...$("#files").files];
  if (!files.length) return notify("Choose one or more files to upload.");
  let baseId = $("#upload-base").value;
  if (baseId === NEW_BASE) {
    const name = $("#new-base-name").value.trim();
    if (!name) return notify("Name the new knowledge base first.");
    try {
      baseId = (await api("/knowledge-bases", { method: "POST", body: { name } })).knowledge_base_id;
    } catch (error) {
      return notify(error.message);
    }
    $("#new-base-name").value = "";
    await loadBases();
    $("#upload-base").value = baseId;
    showNewBaseName();
    if (state.thread) await chooseBase(baseId, true);
  }
  $("#files").value = "";
  for (const file of files) await uploadOne(baseId, file);
  await loadBases();
}

// One file, with its progress and outcome on a line of its own.
function uploadOne(baseId, file) {
  const item = document.createElement("li");
  const name = document.createElement("span");
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Uploading ${file.name}`);
  const outcome = document.createElement("span");
  outcome.className = "outcome";
  outcome.textContent = "Uploading…";
  item.append(name, bar, outcome);
  $("#uploads").prepend(item);

  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();  // fetch reports no upload progress
    xhr.open("POST", `/knowledge-bases/${baseId}/documents`);
    xhr.setRequestHeader("x-api-key", state.key);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.upload.addEventListener("load", () => { outcome.textContent = "Reading and indexing…"; });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* keep the status */ }
      bar.value = 100;
      if (xhr.status < 300) {
        item.className = "ok";
        outcome.textContent = body.outcome === "unchanged"
          ? "Already there, unchanged." : `Added: ${body.chunk_count} passages.`;
      } else {
        item.className = "rejected";
        outcome.setAttribute("role", "alert");
        outcome.textContent = `Rejected: ${body.detail || `${xhr.status} ${xhr.statusText}`}`;
        if (xhr.status === 401) signOut(body.detail);
      }
      resolve();
    });
    xhr.addEventListener("error", () => {
      item.className = "rejected";
      outcome.textContent = "Rejected: the appliance could not be reached.";
      resolve();
    });
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

// Layout and keyboard ----------------------------------------------------

function notify(message) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.hidden = !message;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { notice.hidden = true; }, 8000);
}

function scrollToEnd() {
  const list = $("#messages");
  list.scrollTop = list.scrollHeight;
}

function toggle(buttonId, panelId, open) {
  const panel = $(panelId);
  const show = open ?? !panel.classList.contains("open");
  panel.classList.toggle("open", show);
  $(buttonId).setAttribute("aria-expanded", String(show));
}

function closeDrawers() {
  // On a narrow screen the conversation list is a drawer: close it when the user
  // chooses a conversation, never when one finishes loading (that would shut a
  // drawer they had just opened).
  if (matchMedia("(max-width: 760px)").matches) toggle("#toggle-sidebar", "#sidebar", false);
}

function setup() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  $("#new-conversation").addEventListener("click", () => {
    closeDrawers();
    newThread().catch((e) => notify(e.message));
  });
  $("#conversations").addEventListener("click", (event) => {
    if (event.target.closest("a")) closeDrawers();
  });
  $("#composer").addEventListener("submit", (e) => send(e).catch((error) => notify(error.message)));
  $("#stop").addEventListener("click", stop);
  $("#upload-form").addEventListener("submit", (e) => upload(e).catch((error) => notify(error.message)));
  $("#upload-base").addEventListener("change", showNewBaseName);
  $("#toggle-knowledge").addEventListener("click", () => toggle("#toggle-knowledge", "#knowledge"));
  $("#toggle-sidebar").addEventListener("click", () => toggle("#toggle-sidebar", "#sidebar"));
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.running && !$("#passage").open) stop();
  });
  window.addEventListener("hashchange", () => {
    const wanted = location.hash.match(/^#\/c\/([0-9a-f-]{36})$/);
    if (state.key && wanted && wanted[1] !== state.thread?.thread_id) {
      openThread(wanted[1]).catch((error) => notify(error.message));
    }
  });
  if (state.key) enter().catch(() => signOut());
  else signOut();
}

setup();
