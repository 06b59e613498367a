"""Ignore rules of one watched root: built-ins, ``.gitignore``/``.koraignore`` files, config globs.

Syntax (a subset of gitignore, the same for every source): blank lines and ``#`` comments are
skipped; ``!pat`` re-includes; ``pat/`` matches directories only; a pattern containing a ``/``
(other than a trailing one) is anchored to the directory of its file (the root for config
globs), otherwise it matches a name at any depth; ``*`` and ``?`` do not cross ``/``;
``[abc]``/``[!a-z]`` are classes; ``**/`` matches any number of directories, ``/**`` everything
inside. A path inside an ignored directory is ignored whatever later rules say (as in git).

Precedence, lowest first (the last matching rule wins): built-ins, then ignore files from the
root downwards (in one directory ``.gitignore`` before ``.koraignore``), then the config globs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..fsopen import NotRegularFile, open_regular_file
from .walk import walk

log = structlog.get_logger(__name__)

IGNORE_FILES = (".gitignore", ".koraignore")
MAX_IGNORE_FILE_BYTES = 1 << 20  # the rest of a larger ignore file is not read
BUILTIN_GLOBS = (
    ".git/", "*.swp", "*.swo", "*.swx", "*~", ".#*", "4913", "*.tmp", ".goutputstream-*", "*.kate-swp",
)
_IGNORE_NAMES = frozenset(IGNORE_FILES)
_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Rule:
    base: str  # directory the rule is relative to ("" = the root)
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    source: str


def parse_line(line: str, base: str = "", source: str = "config") -> Rule | None:
    """One gitignore-style line → a rule, or None for blanks and comments."""
    line = line.rstrip("\r\n")
    if not line.endswith("\\ "):
        line = line.rstrip(" ")
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate or line.startswith(("\\!", "\\#")):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    body = translate(line.lstrip("/"))
    regex = re.compile(body if anchored else "(?:.*/)?" + body)
    return Rule(base, regex, negate, dir_only, source)


def translate(glob: str) -> str:
    """A gitignore glob (no leading or trailing '/') → a regex body for ``fullmatch``."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i) and (i == 0 or glob[i - 1] == "/"):
            if glob.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
                continue
            if i + 2 == n:
                out.append(".*")
                i += 2
                continue
        if c == "*":
            while i + 1 < n and glob[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[^"), i) else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                inner = glob[i + 1 : end]
                if inner[:1] in ("!", "^"):
                    inner = "^" + inner[1:]
                out.append("[" + inner.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _scan_failed(rel: str, exc: OSError) -> None:
    log.warning("ignore_scan_failed", dir=rel or ".", error=exc.strerror)


class IgnoreRules:
    """Decides whether a path (POSIX, relative to the root) is ignored. Thread-safe to read."""

    def __init__(self, root_path: Path | None, globs: tuple[str, ...] = (), *, builtin: bool = True,
                 scan: bool = True) -> None:
        self.root_path = root_path
        self.globs = tuple(globs)
        self.builtin = builtin
        self._rules: tuple[Rule, ...] = ()
        self._cache: dict[str, bool] = {}
        self._any: re.Pattern[str] | None = None
        self._bases: tuple[str, ...] = ()
        self._head = [r for g in (BUILTIN_GLOBS if builtin else ()) if (r := parse_line(g, "", "builtin"))]
        self._tail = [r for g in self.globs if (r := parse_line(g, "", "config"))]
        self._loaded: list[Rule] = []
        self.scanned = False  # True once the ignore files below the root have been read
        if scan:
            self.reload()
        else:
            self._set(self._head, self._loaded, self._tail)

    @classmethod
    def for_root(cls, root_path: Path, globs: tuple[str, ...] | list[str] = (), *, scan: bool = True) -> IgnoreRules:
        """Rules for ``root_path``: built-ins + its ignore files (root and subdirectories) + ``globs``.

        ``scan=False`` leaves the ignore files unread: the watch set-up lists every kept directory
        anyway and reads them on the way (:meth:`learner`), saving a walk of the tree.
        """
        return cls(root_path, tuple(globs), scan=scan)

    def reload(self) -> None:
        """Re-read the ignore files (call after one of them changed)."""
        learner = self.learner()
        if self.root_path is not None:
            # parents first: their rules decide which subdirectories are visited
            for rel, entries in walk(self.root_path, learner, on_error=_scan_failed):
                learner.learn(rel, [e.name for e in entries])
        self.adopt(learner)
        log.debug("ignore_rules_loaded", root=str(self.root_path), rules=len(self._rules))

    def learner(self) -> IgnoreRules:
        """Fresh rules of the same root with no ignore file read yet: give it every kept directory's
        listing, parents first (:meth:`learn`; it decides which subdirectories are kept), then
        :meth:`adopt` it. Until then these rules stay as they were."""
        return IgnoreRules(self.root_path, self.globs, builtin=self.builtin, scan=False)

    def learn(self, rel: str, names: list[str]) -> None:
        """Read the ignore files among ``names``, the entries of directory ``rel``."""
        if self.root_path is None or _IGNORE_NAMES.isdisjoint(names):
            return
        found = self._read_files(self.root_path, rel)
        if found:
            self._loaded.extend(found)
            self._set(self._head, self._loaded, self._tail)

    def adopt(self, learner: IgnoreRules) -> None:
        """Take the rules a :meth:`learner` read (one swap: readers see the old or the new set)."""
        self._loaded = learner._loaded
        self._rules, self._any, self._bases, self._cache = learner._rules, learner._any, learner._bases, learner._cache
        self.scanned = True

    def _set(self, head: list[Rule], loaded: list[Rule], tail: list[Rule]) -> None:
        self._rules, self._cache = tuple(head + loaded + tail), {}
        # A quick "can any rule match at all?": one regex for the rules of the root, the bases of the others.
        plain = [r.regex.pattern for r in self._rules if not r.base]
        try:
            self._any = re.compile("|".join(f"(?:{p})" for p in plain)) if plain else None
        except re.error:  # patterns that do not combine: no shortcut
            self._any = re.compile("(?s:.*)")
        self._bases = tuple({r.base + "/" for r in self._rules if r.base})

    @staticmethod
    def _read_files(root_path: Path, rel: str) -> list[Rule]:
        rules: list[Rule] = []
        for name in IGNORE_FILES:
            source = f"{rel}/{name}" if rel else name
            try:  # like every read of a watched root: no symlink followed, never blocking on a FIFO
                with open_regular_file(root_path, source) as fh:
                    text = fh.read(MAX_IGNORE_FILE_BYTES).decode("utf-8", errors="replace")
            except NotRegularFile as exc:
                log.warning("ignore_file_skipped", file=source, reason=exc.reason)
                continue
            except OSError:
                continue
            rules.extend(r for line in text.splitlines() if (r := parse_line(line, rel, source)))
        return rules

    def is_ignored(self, path: str, is_dir: bool = False) -> bool:
        """True when ``path`` or one of its parent directories is ignored."""
        if not path:
            return False
        if is_dir:  # directories are asked about again and again (rule loading, watches, crawls): cached
            return self._dir_ignored(path)
        parent, _, _ = path.rpartition("/")
        if parent and self._dir_ignored(parent):
            return True
        return self._match(path, is_dir)

    def _dir_ignored(self, path: str) -> bool:
        hit = self._cache.get(path)
        if hit is None:
            parent, _, _ = path.rpartition("/")
            hit = (bool(parent) and self._dir_ignored(parent)) or self._match(path, True)
            if len(self._cache) >= _CACHE_MAX:
                self._cache = {}
            self._cache[path] = hit
        return hit

    def _match(self, path: str, is_dir: bool) -> bool:
        if (self._any is None or not self._any.fullmatch(path)) and not path.startswith(self._bases):
            return False  # no rule can match: the common case, one regex instead of one per rule
        result = False
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.base:
                if not path.startswith(rule.base + "/"):
                    continue
                rel = path[len(rule.base) + 1 :]
            else:
                rel = path
            if rule.negate is not result:
                continue  # cannot change the outcome
            if rule.regex.fullmatch(rel):
                result = not rule.negate
        return result

    @staticmethod
    def is_ignore_file(path: str) -> bool:
        return path.rpartition("/")[2] in IGNORE_FILES
