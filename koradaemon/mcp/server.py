"""The MCP server over stdio, built on the ``mcp`` SDK's low-level :class:`~mcp.server.lowlevel.Server`.

stdout carries the protocol only; log lines go to stderr. Tool failures are MCP tool errors
(``is_error``) with one message; the socket calls run in a worker thread so the protocol loop never blocks.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from .. import __version__
from .tools import TOOLS, MemoryTools, ToolError

SERVER_NAME = "koradaemon"

_READ_ONLY = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                   open_world_hint=False)


def tool_list() -> list[types.Tool]:
    return [types.Tool(name=t.name, title=t.title, description=t.description, input_schema=t.schema,
                       annotations=_READ_ONLY.model_copy(update={"title": t.title})) for t in TOOLS]


def build_server(tools: MemoryTools) -> Server[Any]:
    async def list_tools(_ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await anyio.to_thread.run_sync(tools.run, params.name, params.arguments)
        except ToolError as exc:
            return types.CallToolResult(content=[types.TextContent(text=str(exc))], is_error=True)
        except Exception as exc:  # the daemon went away, a reply was malformed, ...: still one message
            message = f"{type(exc).__name__}: {exc}"[:500]
            return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)
        text = json.dumps(result, ensure_ascii=False, sort_keys=True)
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=result)

    return Server(
        SERVER_NAME,
        version=__version__,
        instructions=f"Memory of agency {tools.agency_id!r}: 'search' returns references, 'read' their text.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(tools: MemoryTools) -> None:
    """Serve until the client closes stdin."""
    server = build_server(tools)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
