"""``koradaemon mcp --agency A``: where the server finds the socket and the agency's token.

The agent (spawned by the daemon) gets ``KORA_SOCKET``, ``KORA_AGENCY`` and ``KORA_TOKEN`` (or
``KORA_TOKEN_FILE``) in its environment and needs no config file; an operator's shell falls back to
the configuration and the daemon's token directory.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from ..config_model import Config
from ..errors import AuthError, UsageError
from ..paths import check_agency_id


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("mcp", help="serve one agency's memory to an agent over MCP (stdio)")
    m.add_argument("--agency", help="agency (default: $KORA_AGENCY)")
    m.add_argument("--socket", type=Path, help="control socket (default: $KORA_SOCKET, else from the config)")
    m.add_argument("--token-file", type=Path, help="file holding the agency's token (default: $KORA_TOKEN_FILE)")


def _token(args: argparse.Namespace, agency: str, tokens_dir: Path | None) -> str:
    token = os.environ.get("KORA_TOKEN", "")
    file = args.token_file or (Path(os.environ["KORA_TOKEN_FILE"]) if os.environ.get("KORA_TOKEN_FILE") else None)
    if not token and file is not None:
        try:
            token = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthError(f"cannot read the token file {file}: {exc.strerror}") from None
    if not token and tokens_dir is not None:
        from ..service.tokens import TokenStore

        try:
            token = TokenStore(tokens_dir).read(agency)
        except OSError as exc:
            raise AuthError(f"cannot read agency {agency!r}'s token: {exc.strerror}") from None
    if not token:
        raise AuthError(f"no token for agency {agency!r}", hint="set KORA_TOKEN or KORA_TOKEN_FILE")
    return token


def run(args: argparse.Namespace, load_config: Callable[[argparse.Namespace], Config]) -> int:
    """Resolve agency, socket and token, then serve MCP on stdin/stdout until stdin closes."""
    from ..control.client import ControlClient
    from .server import serve_stdio
    from .tools import MemoryTools

    agency = args.agency or os.environ.get("KORA_AGENCY", "")
    if not agency:
        raise UsageError("mcp needs --agency (or $KORA_AGENCY)")
    check_agency_id(agency)
    socket_env = os.environ.get("KORA_SOCKET")
    sock = args.socket or (Path(socket_env) if socket_env else None)
    tokens_dir: Path | None = None
    if sock is None or not (os.environ.get("KORA_TOKEN") or os.environ.get("KORA_TOKEN_FILE") or args.token_file):
        cfg = load_config(args)
        if cfg.agency(agency) is None:
            raise UsageError(f"unknown agency {agency!r}", hint="see 'agencies' in the configuration")
        sock = sock or cfg.socket_path()
        tokens_dir = cfg.tokens_path()
    token = _token(args, agency, tokens_dir)
    with ControlClient(sock, timeout=60) as client:
        serve_stdio(MemoryTools(client.call, agency, token))
    return 0
