"""The command line of the two hot commands, ``search`` and ``status``, read without argparse.

Importing argparse (with gettext, re, enum) and building the command's parser is a large share of
a ``search`` call. This reader takes the plain forms only: exact option names (``--agency ID``,
``--agency=ID``, ``-c FILE``, ``--json``), and for ``search`` one query that does not start with
"-". Anything else returns None and argparse parses the call as before: help, ``--version``,
abbreviated options, ``--``, unknown options, a missing or bad value, a value starting with "-",
a second query, every other command. So help, errors and exit codes are argparse's, and where this
returns a result it is the Namespace argparse would build (tests compare the two).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Callable
else:
    class Namespace:
        """argparse.Namespace without argparse: attributes from keywords, compared by value."""

        def __init__(self, **kwargs: object) -> None:
            self.__dict__.update(kwargs)

        def __eq__(self, other: object) -> bool:
            return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

        def __contains__(self, key: str) -> bool:
            return key in self.__dict__

        def __repr__(self) -> str:
            return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items())) + ")"

SEARCH_MAX_LIMIT = 1000
MODES = ("keyword", "vector", "hybrid")
COLORS = ("auto", "always", "never")
GLOBAL_OPTIONS = {"-c": "config", "--config": "config", "--data-root": "data_root"}


def number(lo: int, hi: int) -> Callable[[str], int]:
    """A whole number in lo..hi (ValueError otherwise); the parser's check of --limit/--offset values."""
    def check(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range {lo}..{hi}")
        return value

    return check


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise ValueError(text)
        return text

    return check


def _text(text: str) -> str:
    return text


# command -> ({option: (dest, converter or None for a flag)}, positional dest or None, defaults)
_Options = dict[str, tuple[str, "Callable[[str], object] | None"]]
COMMANDS: dict[str, tuple[_Options, str | None, dict[str, object]]] = {
    "status": ({"--agency": ("agency", _text), "--json": ("json", None)}, None, {"agency": None, "json": False}),
    "search": ({"--agency": ("agency", _text), "--limit": ("limit", number(1, SEARCH_MAX_LIMIT)),
                "--offset": ("offset", number(0, 1_000_000)), "--fts": ("fts", None),
                "--mode": ("mode", _choice(MODES)), "--color": ("color", _choice(COLORS)),
                "--json": ("json", None)},
               "query",
               {"agency": None, "limit": 10, "offset": 0, "fts": False, "mode": None, "color": "auto",
                "json": False}),
}


def parse_fast(argv: list[str]) -> Namespace | None:
    """argparse's Namespace for a plain ``search``/``status`` command line; None: let argparse parse it."""
    values: dict[str, object] = {"config": None, "data_root": None}
    command: str | None = None
    options: _Options = {}
    positional: str | None = None
    convert: Callable[[str], object] | None
    i, n = 0, len(argv)
    while i < n:
        word = argv[i]
        i += 1
        if not word.startswith("-"):
            if command is None:  # the command word
                if word not in COMMANDS:
                    return None
                command = word
                options, positional, defaults = COMMANDS[word]
                values["cmd"] = word
                values.update(defaults)
            elif positional is None or positional in values:
                return None
            else:
                values[positional] = word
            continue
        name, eq, inline = word.partition("=")
        if name in GLOBAL_OPTIONS and (not eq or name.startswith("--")):
            dest, convert = GLOBAL_OPTIONS[name], _text
        elif name in options:
            dest, convert = options[name]
        else:
            return None  # help, --version, an abbreviation, --, an unknown option: argparse
        if convert is None:  # a flag: no value, not even "--json="
            if eq:
                return None
            values[dest] = True
            continue
        if eq:
            text = inline
        elif i < n:
            text, i = argv[i], i + 1
        else:
            return None
        if not text or text.startswith("-"):
            return None
        try:
            values[dest] = convert(text)
        except ValueError:
            return None
    if command is None or (positional is not None and positional not in values):
        return None
    return Namespace(**values)
