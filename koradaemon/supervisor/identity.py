"""Who the agent runs as: its own uid/gid (``agent.user``/``agent.group``), its own HOME, its own token.

The daemon (root, or holding CAP_SETUID/CAP_SETGID/CAP_CHOWN) gives the agent its workdir, state dir
and HOME (0700, owned by the agent), lets the agent's group traverse (``g+x``, never read) the folders
above them and the control socket's folder, and opens the socket to that group (0660). Everything else
of the daemon (database, logs, audit, snapshots, token folder) keeps its 0600/0700 modes and owner, so
the agent cannot read it. The agent's token reaches it in its environment and as ``$HOME/.kora/token``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..errors import ConfigError, SupervisorError

log = structlog.get_logger(__name__)

TOKEN_RELPATH = Path(".kora") / "token"


@dataclass(frozen=True)
class AgentIdentity:
    """The agent's account; ``uid``/``gid`` None means "the daemon's own" (no switch)."""

    user: str | None
    uid: int | None
    gid: int | None
    home: Path

    @classmethod
    def resolve(cls, user: str, group: str, home: Path) -> AgentIdentity:
        """Look the account up; :class:`ConfigError` naming the key when it does not exist."""
        if not user:
            if group:
                raise ConfigError("agent.group: set only together with agent.user")
            return cls(None, None, None, home)
        try:
            pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise ConfigError(f"agent.user: no such user {user!r}", hint="create it (useradd --system)") from None
        gid = pw.pw_gid
        if group:
            try:
                gid = (grp.getgrnam(group) if not group.isdigit() else grp.getgrgid(int(group))).gr_gid
            except KeyError:
                raise ConfigError(f"agent.group: no such group {group!r}") from None
        if pw.pw_uid == 0 or gid == 0:
            raise ConfigError("agent.user/agent.group: the agent must not run as root")
        return cls(pw.pw_name, pw.pw_uid, gid, home)

    @property
    def switches(self) -> bool:
        return self.uid is not None and self.uid != os.geteuid()

    def popen_kwargs(self) -> dict[str, object]:
        """Arguments for :class:`subprocess.Popen` that drop to the agent's uid/gid (no extra groups)."""
        if not self.switches:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def env(self) -> dict[str, str]:
        out = {"HOME": str(self.home)}
        if self.user is not None:
            out.update(USER=self.user, LOGNAME=self.user)
        return out

    def prepare(self, data_root: Path, own: Iterable[Path], reach: Iterable[Path] = ()) -> None:
        """Create the agent's own folders (0700, owned by it, contents included) and let it reach them.

        The agent owns these folders, so it may have swapped a symlink in: every folder is opened
        component by component without following symlinks, and the tree is walked by descriptor.
        """
        for path in own:
            fd = open_dir(data_root, path, create=True)
            try:
                if self.switches:
                    _chown_tree(fd, self.uid, self.gid)
            finally:
                os.close(fd)
            if self.switches:
                self._traversable(data_root, path.parent)
        if self.switches:
            for path in reach:
                self._traversable(data_root, path)

    def grant_socket(self, data_root: Path, socket_path: Path) -> None:
        """Let the agent's group connect to the control socket (its folder g+x, the socket 0660)."""
        if not self.switches or not socket_path.exists():
            return
        assert self.gid is not None
        self._traversable(data_root, socket_path.parent)
        os.chown(socket_path, -1, self.gid, follow_symlinks=False)
        os.chmod(socket_path, 0o660)

    def write_token(self, data_root: Path, token: str) -> Path:
        """``$HOME/.kora/token``, 0600, owned by the agent; replaced atomically at each start (by descriptor:
        the agent owns its HOME and could have planted symlinks there)."""
        home_fd = open_dir(data_root, self.home, create=True)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(TOKEN_RELPATH.parent.name, 0o700, dir_fd=home_fd)
            fd = os.open(TOKEN_RELPATH.parent.name, _DIR_FLAGS, dir_fd=home_fd)
        except OSError as exc:
            raise SupervisorError(f"cannot prepare {self.home / TOKEN_RELPATH.parent}: {exc.strerror}") from None
        finally:
            os.close(home_fd)
        tmp = f".token.{os.getpid()}.tmp"
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=fd)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
            try:
                os.write(out, (token + "\n").encode())
                if self.switches:
                    os.fchown(out, self.uid or 0, self.gid or 0)
            finally:
                os.close(out)
            os.replace(tmp, TOKEN_RELPATH.name, src_dir_fd=fd, dst_dir_fd=fd)
            if self.switches:
                os.fchown(fd, self.uid or 0, self.gid or 0)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        return self.home / TOKEN_RELPATH

    def _traversable(self, data_root: Path, path: Path) -> None:
        """``g+x`` for the agent's group on ``path`` and each folder between it and the data root (included).

        Folders the agent owns are left alone; nothing gets read permission.
        """
        assert self.gid is not None
        root = data_root.resolve()
        current = path.resolve()
        chain = [current]
        while current != root and root in current.parents:
            current = current.parent
            chain.append(current)
        if chain[-1] != root:  # outside the data root (e.g. $RUNTIME_DIRECTORY): only the folder itself
            chain = chain[:1]
        for folder in chain:
            st = folder.stat()
            if st.st_uid == self.uid:
                continue
            if st.st_gid != self.gid:
                os.chown(folder, -1, self.gid)
            if not st.st_mode & stat.S_IXGRP:
                os.chmod(folder, stat.S_IMODE(st.st_mode) | stat.S_IXGRP)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(data_root: Path, path: Path, *, create: bool) -> int:
    """A descriptor of the folder ``path`` under ``data_root``, opened component by component without
    following a symlink (and created 0700 where missing, with ``create``)."""
    try:
        rel = path.relative_to(data_root)
    except ValueError:
        raise SupervisorError(f"agent folder {path} is not under the data root") from None
    fd = os.open(data_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except OSError as exc:
        os.close(fd)
        raise SupervisorError(f"agent folder {path}: {exc.strerror} (a symlink, or not a folder?)") from None
    return fd


def _chown_tree(fd: int, uid: int | None, gid: int | None) -> None:
    """Give the agent its folder and everything in it (symlinks themselves, never their targets)."""
    assert uid is not None and gid is not None
    os.fchown(fd, uid, gid)
    os.fchmod(fd, 0o700)
    for _root, dirs, files, root_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        for name in (*dirs, *files):
            try:
                st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                if st.st_uid != uid or st.st_gid != gid:
                    os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)
            except OSError as exc:  # one odd entry must not keep the agent from starting
                log.warning("agent_chown_failed", name=name, error=exc.strerror)
