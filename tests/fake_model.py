"""A loopback OpenAI-compatible chat-completions server for the opt-in gateway test.

It calls the memory search tool: directly when offered (a tool whose name mentions ``koradaemon`` and
ends in ``search``), else through OpenClaw's Tool Search (``tool_search`` to find it, then
``tool_call``); with the search result in the conversation it answers with a text quoting it.
Streaming (SSE) and plain JSON replies; every request body is kept.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_ID = "fake-memory-model"


class FakeModel:
    def __init__(self, query: str) -> None:
        self.query = query
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self) -> FakeModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def tool_results(self) -> list[str]:
        """The tool results of the last request (the whole conversation so far)."""
        last = self.requests[-1] if self.requests else {}
        return [_text(m.get("content")) for m in last.get("messages", []) if m.get("role") == "tool"]

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The assistant message for this request: a tool call, or the final text."""
        results = [_text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "tool"]
        names = [t.get("function", {}).get("name", "") for t in body.get("tools", []) or []]
        direct = next((n for n in names if "koradaemon" in n and n.endswith("search")), None)
        args = {"query": self.query, "limit": 3}
        if direct is not None and not results:
            return _call(direct, args)
        if direct is None and "tool_call" in names and len(results) < 2:
            if not results:
                return _call("tool_search", {"query": "koradaemon memory search"})
            found = re.search(r"[\w.:/-]*koradaemon[\w.:/-]*search\b", results[0])
            return _call("tool_call", {"id": found.group(0) if found else "koradaemon__search", "args": args})
        if results:
            return {"role": "assistant", "content": f"MEMORY SAYS: {results[-1][:300]}"}
        return {"role": "assistant", "content": f"NO MEMORY TOOL among {len(names)} tools"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json({"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "test"}]})
                else:
                    self._json({"error": "not found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                model.requests.append(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json({"error": "not found"}, 404)
                    return
                message = model.reply(body)
                finish = "tool_calls" if message.get("tool_calls") else "stop"
                if body.get("stream"):
                    self._stream(message, finish)
                else:
                    self._json({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL_ID,
                                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

            def _stream(self, message: dict[str, Any], finish: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                delta: dict[str, Any] = {"role": "assistant"}
                if message.get("tool_calls"):
                    delta["tool_calls"] = [{"index": 0, **message["tool_calls"][0]}]
                else:
                    delta["content"] = message["content"]
                for choice in ({"index": 0, "delta": delta, "finish_reason": None},
                               {"index": 0, "delta": {}, "finish_reason": finish}):
                    self._event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                                 "model": MODEL_ID, "choices": [choice]})
                self._event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL_ID,
                             "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, obj: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            def _json(self, obj: dict[str, Any], code: int = 200) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return json.dumps(content)


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    call = {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}
