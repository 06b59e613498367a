"""The agent's door to its memory: a Model Context Protocol server over stdio (``koradaemon mcp``).

It speaks to the running daemon only through the control socket, with one agency's token.
"""
