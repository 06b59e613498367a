"""A loopback OpenAI-compatible chat-completions server for the opt-in gateway test.

First turn: it answers with a call of the memory search tool (the offered tool whose name ends in
``search`` and mentions ``koradaemon``); once a tool result is in the conversation it answers with a
text quoting that result. Streaming (SSE) and plain JSON replies; every request body is kept.
"""

from __future__ import annotations

import json
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
        out = []
        for req in self.requests:
            for msg in req.get("messages", []):
                if msg.get("role") == "tool":
                    content = msg.get("content")
                    out.append(content if isinstance(content, str) else json.dumps(content))
        return out

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The assistant message for this request: a tool call, or the final text."""
        results = [m for m in body.get("messages", []) if m.get("role") == "tool"]
        if results:
            content = results[-1].get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            return {"role": "assistant", "content": f"MEMORY SAYS: {text[:300]}"}
        names = [t.get("function", {}).get("name", "") for t in body.get("tools", []) or []]
        tool = next((n for n in names if "koradaemon" in n and n.endswith("search")), None)
        if tool is None:
            return {"role": "assistant", "content": f"NO MEMORY TOOL among {len(names)} tools"}
        call = {"id": "call_memory_1", "type": "function",
                "function": {"name": tool, "arguments": json.dumps({"query": self.query, "limit": 3})}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}

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
