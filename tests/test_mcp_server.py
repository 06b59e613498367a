"""`koradaemon mcp`: the SDK's own stdio client against the server, against a real daemon subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from conftest import DaemonProc, wait_for
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

LINE = "plain filler line number {:05d} of the notes\n"
TARGET_LINE = 2500


def _write_notes(root: Path) -> bytes:
    lines = [LINE.format(i) for i in range(1, 3001)]
    lines[TARGET_LINE - 1] = "the zebracorn hides on exactly this line\n"
    data = "".join(lines).encode()
    (root / "alpha" / "notes" / "big.md").write_bytes(data)
    (root / "beta" / "notes" / "b.md").write_text("betasecret zebracorn of the other tenant\n")
    return data


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORA_")}
    return {**env, **extra}


def _params(d: DaemonProc, *extra: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "koradaemon", "-c", str(d.config), "--data-root", str(d.root), "mcp", "--agency", "alpha", *extra],
        env=env or _env(),
    )


def _session(params: StdioServerParameters, body: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                with anyio.fail_after(60):
                    await body(s)

    anyio.run(main)


async def _call(s: ClientSession, name: str, args: dict[str, Any]) -> types.CallToolResult:
    res = await s.call_tool(name, args)
    assert isinstance(res, types.CallToolResult)
    return res


def _error(res: types.CallToolResult) -> str:
    assert res.is_error, f"expected a tool error, got {res.structured_content}"
    text = " ".join(c.text for c in res.content if isinstance(c, types.TextContent))
    assert text
    return text


def test_mcp_tools_search_read_status_over_stdio_against_a_daemon(daemon: DaemonProc) -> None:
    data = _write_notes(daemon.root)
    daemon.start()
    wait_for(lambda: daemon.search("zebracorn"), 30, 0.05, "alpha indexed")
    wait_for(lambda: daemon.search("betasecret", "beta"), 30, 0.05, "beta indexed")
    beta_hit = daemon.search("betasecret", "beta")[0]
    seen: dict[str, Any] = {}

    async def body(s: ClientSession) -> None:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert set(tools) == {"search", "read", "status"}
        for t in tools.values():
            assert t.annotations is not None and t.annotations.read_only_hint is True
            assert t.input_schema["type"] == "object" and t.input_schema["additionalProperties"] is False
        res = await _call(s, "search", {"query": "zebracorn", "limit": 5})
        assert not res.is_error, res.content
        results = res.structured_content["results"]
        assert [(r["root"], r["path"]) for r in results] == [("alpha/notes", "big.md")]  # beta's hit is not there
        ref = results[0]
        body_bytes = data[ref["offset"] : ref["offset"] + ref["length"]]
        assert hashlib.sha256(body_bytes).hexdigest() == ref["sha256"]
        assert ref["line_start"] == data[: ref["offset"]].count(b"\n") + 1
        assert ref["line_start"] <= TARGET_LINE <= ref["line_end"]
        assert "zebracorn" in ref["snippet"] and isinstance(ref["score"], float)
        page2 = await _call(s, "search", {"query": "zebracorn", "limit": 5, "offset": 1})
        assert page2.structured_content["results"] == []
        ref_args = {k: ref[k] for k in ("root", "path", "offset", "length", "sha256")}
        got = await _call(s, "read", {**ref_args, "max_chars": 100_000})
        assert not got.is_error, got.content
        assert got.structured_content["text"] == body_bytes.decode()
        assert got.structured_content["line_start"] == ref["line_start"]
        cut = await _call(s, "read", {**ref_args, "max_chars": 10})
        assert cut.structured_content["text"] == body_bytes.decode()[:10] and cut.structured_content["truncated"]
        st = await _call(s, "status", {})
        assert st.structured_content["agency_id"] == "alpha" and st.structured_content["files"] >= 1
        assert "beta" not in json.dumps(st.structured_content)
        seen["ref"] = ref_args
        # Nothing of beta is reachable, whatever the input.
        beta_ref = {k: beta_hit[k] for k in ("root", "path", "offset", "length", "sha256")}
        assert "not a root" in _error(await _call(s, "read", beta_ref))
        assert _error(await _call(s, "read", {**beta_ref, "root": "alpha/notes", "path": "../../beta/notes/b.md"}))
        assert _error(await _call(s, "read", {**beta_ref, "root": "alpha/notes/../../beta/notes"}))
        assert _error(await _call(s, "search", {"query": "betasecret", "agency_id": "beta"}))
        none = await _call(s, "search", {"query": "betasecret"})
        assert not none.is_error and none.structured_content["results"] == []
        # Every input validated, each refusal one message.
        for bad in ({}, {"query": ""}, {"query": "x", "limit": 0}, {"query": "x", "limit": "5"},
                    {"query": "x", "limit": 51}, {"query": "x", "offset": -1}, {"query": "x" * 1001},
                    {"query": 7}, {"query": "x", "limit": True}):
            assert _error(await _call(s, "search", bad))
        for bad in ({**ref_args, "length": 10**9}, {**ref_args, "sha256": "ab"}, {**ref_args, "offset": -5},
                    {**ref_args, "path": "/etc/passwd"}, {**ref_args, "max_chars": 0}, {"root": "alpha/notes"}):
            assert _error(await _call(s, "read", bad))
        assert _error(await _call(s, "nosuchtool", {}))

    _session(_params(daemon), body)

    # The file changes under the reference: the same read is refused as stale, never served wrong.
    changed = data.replace(b"zebracorn hides", b"unicorn hides!!")
    (daemon.root / "alpha" / "notes" / "big.md").write_bytes(changed)

    async def stale(s: ClientSession) -> None:
        assert "stale" in _error(await _call(s, "read", seen["ref"]))

    _session(_params(daemon), stale)


def test_mcp_with_a_wrong_token_gets_tool_errors_not_data(daemon: DaemonProc) -> None:
    _write_notes(daemon.root)
    daemon.start()
    wait_for(lambda: daemon.search("zebracorn"), 30, 0.05, "alpha indexed")
    sock = str(daemon.root / "run" / "koradaemon.sock")

    async def body(s: ClientSession) -> None:
        assert "auth" in _error(await _call(s, "search", {"query": "zebracorn"}))
        assert "auth" in _error(await _call(s, "status", {}))

    _session(_params(daemon, "--socket", sock, env=_env(KORA_TOKEN="0" * 64)), body)
