"""A fake Ollama server that speaks Ollama's HTTP protocol: NDJSON streaming
on /api/chat, /api/tags, /api/show, 404 for a model it does not have, 503
when busy, and an ``{"error": ...}`` line in the middle of a stream. Asked
with ``tools``, it can answer with tool calls as Ollama does: one
``message.tool_calls`` list (several calls in one message), each call's
``function`` with its ``index``, ``name`` and ``arguments`` as a JSON object,
in a chunk of its own before the final one.

It serves on loopback only, in a background thread. ``kill()`` stops it as
a dead process would: the port refuses connections, answers under way
break off and kept-alive connections close; ``restarted()`` is the same server back on the same port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "qwen2.5:3b"
DIGEST = "357c53fb659c5076de1d65ccb0b397446227b71a42be9d1603d46168015c9e4b"


class ToolCalls(list):
    """A reply of tool calls: ``ToolCalls([("lookup_order", {"order_id": "A-1"}), ...])``."""


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeOllama:
    """``behaviour`` is one of: ok, busy, error_midstream, slow. ``busy_for``
    makes the next N chat requests answer 503 before behaving."""

    def __init__(self, models: dict[str, str] | None = None, port: int = 0) -> None:
        self.models = models or {MODEL: DIGEST}
        self.behaviour = "ok"
        self.busy_for = 0
        self.slow_seconds = 5.0
        self.word_delay = 0.0  # seconds before each streamed word, in every behaviour
        self.reply = "Paris is the capital of France."
        # A scripted model: given the request body, the reply (a choice as the JSON the schema asks for),
        # or a ToolCalls to answer with tool calls.
        self.respond: Callable[[dict[str, Any]], str | ToolCalls] | None = None
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.dead = False
        self._open: set[socket.socket] = set()  # connections accepted and not yet closed
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kill(self) -> None:
        self.dead = True
        self.__exit__()
        # A dead process's sockets all close: a client's kept-alive connection
        # must not reach this server's threads after a restart on the same port.
        with self._lock:
            for connection in list(self._open):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restarted(self) -> FakeOllama:
        """A new server on this one's port, answering as it did (started)."""
        again = FakeOllama(self.models, port=self.server.server_address[1])
        again.respond, again.reply, again.word_delay = self.respond, self.reply, self.word_delay
        return again.__enter__()

    def reset(self) -> None:
        self.behaviour, self.busy_for, self.requests = "ok", 0, []

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/api/chat"]

    def _take_busy(self) -> bool:
        with self._lock:
            if self.busy_for > 0:
                self.busy_for -= 1
                return True
            return self.behaviour == "busy"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._open.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._open.discard(self.connection)
                super().finish()

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self) -> None:
                fake.requests.append({"path": self.path, "body": None})
                if self.path == "/api/tags":
                    self._json(
                        200,
                        {
                            "models": [
                                {
                                    "name": name,
                                    "model": name,
                                    "modified_at": _now(),
                                    "size": 1929912432,
                                    "digest": digest,
                                    "details": {
                                        "format": "gguf",
                                        "family": "qwen2",
                                        "parameter_size": "3.1B",
                                        "quantization_level": "Q4_K_M",
                                    },
                                }
                                for name, digest in fake.models.items()
                            ]
                        },
                    )
                elif self.path == "/api/version":
                    self._json(200, {"version": "0.12.0"})
                else:
                    self._json(404, {"error": "404 page not found"})

            def do_POST(self) -> None:
                body = self._body()
                fake.requests.append({"path": self.path, "body": body})
                model = body.get("model", "")
                if self.path == "/api/show":
                    if model not in fake.models:
                        self._json(404, {"error": f"model '{model}' not found"})
                    else:
                        self._json(
                            200,
                            {
                                "modelfile": "",
                                "parameters": "",
                                "template": "{{ .Prompt }}",
                                "details": {"format": "gguf", "family": "qwen2"},
                                "model_info": {"general.architecture": "qwen2"},
                                "capabilities": ["completion"],
                            },
                        )
                elif self.path == "/api/chat":
                    self._chat(body, model)
                else:
                    self._json(404, {"error": "404 page not found"})

            def _chat(self, body: dict[str, Any], model: str) -> None:
                if model not in fake.models:
                    self._json(404, {"error": f'model "{model}" not found, try pulling it first'})
                    return
                if fake._take_busy():
                    self._json(503, {"error": "server busy, please try again.  maximum pending requests exceeded"})
                    return
                reply = fake.reply
                schema = body.get("format")
                if fake.respond is not None:
                    reply = fake.respond(body)
                elif isinstance(schema, dict):
                    # Ollama constrains the output to the JSON schema: answer its first allowed choice.
                    reply = json.dumps({"choice": schema["properties"]["choice"]["enum"][0]})
                calls = None
                if isinstance(reply, ToolCalls):
                    calls = [
                        {"function": {"index": i, "name": name, "arguments": arguments}}
                        for i, (name, arguments) in enumerate(reply)
                    ]
                    reply = ""
                words = reply.split(" ") if reply else []
                if not body.get("stream", True):
                    final = self._final(model, reply)
                    if calls:
                        final["message"]["tool_calls"] = calls
                    self._json(200, final)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, word in enumerate(words):
                    time.sleep(fake.word_delay)
                    if fake.dead:  # the process is gone: the answer breaks off
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    if fake.behaviour == "slow":
                        time.sleep(fake.slow_seconds)
                    if fake.behaviour == "error_midstream" and i == 2:
                        self._line({"error": "an error was encountered while running the model: unexpected EOF"})
                        break
                    piece = word if i == 0 else " " + word
                    self._line(
                        {
                            "model": model,
                            "created_at": _now(),
                            "message": {"role": "assistant", "content": piece},
                            "done": False,
                        }
                    )
                else:
                    if calls:
                        message = {"role": "assistant", "content": "", "tool_calls": calls}
                        self._line({"model": model, "created_at": _now(), "message": message, "done": False})
                    self._line(self._final(model, ""))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _final(self, model: str, content: str) -> dict[str, Any]:
                return {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": content},
                    "done": True,
                    "done_reason": "stop",
                    "total_duration": 1_000_000,
                    "load_duration": 1000,
                    "prompt_eval_count": 12,
                    "prompt_eval_duration": 1000,
                    "eval_count": len(content.split()) or len(fake.reply.split()),
                    "eval_duration": 1000,
                }

            def _line(self, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
