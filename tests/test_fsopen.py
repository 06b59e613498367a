"""Safe opening (koradaemon.fsopen) and snapshot packing: only regular files are read, nothing blocks."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from koradaemon import fsopen
from koradaemon.errors import PathError, VaultError
from koradaemon.fsopen import NotRegularFile, open_leaf, open_regular, open_root
from koradaemon.index.jobs import IndexJob
from koradaemon.index.prepare import EAGER_LIMIT, ChunkParams, prepare_index
from koradaemon.index.writer import SkipFile
from koradaemon.vault.keys import load_passphrase
from koradaemon.vault.packing import pack_dir

CONTENT = b"regular file content\n"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short folder for Unix socket files (AF_UNIX paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="kfo"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def make_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.fspath(path))
    s.close()  # the socket file stays


def make_device(path: Path) -> bool:
    """A character device node like /dev/zero (reading it never ends); False where mknod is not allowed."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except OSError:
        return False
    return True


def read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


@pytest.fixture(params=["openat2", "walk"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways fsopen resolves a path: one openat2 call (Linux >= 5.6) and the walk used elsewhere."""
    if request.param == "openat2" and fsopen._openat2 is None:
        pytest.skip("openat2 is not available here")
    if request.param == "walk":
        monkeypatch.setattr(fsopen, "_openat2", None)
    return str(request.param)


def test_open_regular_reads_a_regular_file_and_refuses_everything_else(
    tmp_path: Path, short_dir: Path, impl: str
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_bytes(CONTENT)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside secret\n")
    assert read_all(open_regular(root, "sub/f.txt")) == CONTENT
    (root / "link.txt").symlink_to(outside)
    (root / "inner-link.txt").symlink_to(root / "sub" / "f.txt")
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "fifo")
    make_socket(short_dir / "s")
    os.replace(short_dir / "s", root / "sock")
    expected = {"link.txt": "symlink", "inner-link.txt": "symlink", "dirlink/outside.txt": "symlink",
                "fifo": "fifo", "sock": "socket", "sub": "directory"}
    if make_device(root / "dev"):
        expected["dev"] = "device"
    for rel, reason in expected.items():
        with pytest.raises(NotRegularFile) as err:
            open_regular(root, rel)
        assert err.value.reason == reason, rel
    with pytest.raises(FileNotFoundError):
        open_regular(root, "sub/missing.txt")
    with pytest.raises(NotADirectoryError):
        open_regular(root, "sub/f.txt/x")
    for bad in ("/etc/passwd", "../outside.txt", "sub/../../outside.txt", "a\x00b", "", "."):
        with pytest.raises(PathError):
            open_regular(root, bad)
    os.rename(root / "sub", tmp_path / "moved")  # the tree moves while a path into it is in use
    (root / "sub").symlink_to(tmp_path / "moved", target_is_directory=True)
    with pytest.raises(NotRegularFile, match="symlink"):
        open_regular(root, "sub/f.txt")


def test_open_leaf_never_reads_or_blocks_on_a_swapped_in_file(tmp_path: Path, short_dir: Path) -> None:
    """A thread swaps a regular file, a symlink out, a FIFO, a socket and a device node in turn at
    one name; every open either yields the regular file's bytes or is refused, and never hangs."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.txt").write_bytes(b"OUTSIDE" * 10)
    stop = threading.Event()
    errors: list[BaseException] = []

    def swapper() -> None:
        i = 0
        try:
            while not stop.is_set():
                tmp = short_dir / f"t{i % 2}"
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                kind = i % 5
                if kind == 0:
                    tmp.write_bytes(CONTENT)
                elif kind == 1:
                    tmp.symlink_to(tmp_path / "outside.txt")
                elif kind == 2:
                    os.mkfifo(tmp)
                elif kind == 3:
                    make_socket(tmp)
                elif not make_device(tmp):
                    tmp.write_bytes(CONTENT)
                os.replace(tmp, root / "name")
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=swapper)
    t.start()
    seen: dict[str, int] = {}
    root_fd = open_root(root)
    try:
        deadline = time.monotonic() + 60
        wanted = ("file", "symlink", "fifo", "socket")
        while time.monotonic() < deadline and not all(seen.get(k, 0) >= 20 for k in wanted):
            try:
                data = read_all(open_leaf(root_fd, "name"))
            except NotRegularFile as exc:
                seen[exc.reason] = seen.get(exc.reason, 0) + 1
            except FileNotFoundError:
                seen["missing"] = seen.get("missing", 0) + 1
            else:
                assert data == CONTENT
                seen["file"] = seen.get("file", 0) + 1
    finally:
        os.close(root_fd)
        stop.set()
        t.join(10)
    assert not errors, errors
    assert seen.get("file") and seen.get("symlink") and seen.get("fifo") and seen.get("socket"), seen


def test_pack_dir_skips_fifos_sockets_devices_and_symlinks(tmp_path: Path, short_dir: Path) -> None:
    src = tmp_path / "state"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(CONTENT)
    (src / "d" / "b.txt").write_bytes(b"b\n")
    (tmp_path / "secret.txt").write_bytes(b"outside secret\n")
    (src / "link-file").symlink_to(tmp_path / "secret.txt")
    (src / "link-dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(src / "d" / "fifo")  # nobody ever writes it: an open() for reading would block forever
    make_socket(short_dir / "s")
    os.replace(short_dir / "s", src / "sock")
    has_device = make_device(src / "zero")
    out = io.BytesIO()
    result: dict[str, dict[str, int]] = {}
    t = threading.Thread(target=lambda: result.setdefault("counts", pack_dir(src, out)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "pack_dir blocked"
    counts = result["counts"]
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"d", "a.txt", "d/b.txt"}
        assert all(m.isreg() or m.isdir() for m in members.values())
        fh = tar.extractfile("a.txt")
        assert fh is not None and fh.read() == CONTENT
    assert counts["files"] == 2 and counts["dirs"] == 1
    assert counts["skipped_symlink"] == 2 and counts["skipped_fifo"] == 1 and counts["skipped_socket"] == 1
    assert counts.get("skipped_device", 0) == int(has_device)
    assert counts["skipped"] == 4 + int(has_device)


def test_pack_dir_never_follows_a_folder_swapped_for_a_symlink(tmp_path: Path) -> None:
    """A folder replaced by a symlink to an outside folder while packing is not descended into."""
    src = tmp_path / "state"
    src.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"OUTSIDE\n")
    stop = threading.Event()

    def swapper() -> None:
        i = 0
        while not stop.is_set():
            tmp = tmp_path / f"swap{i % 2}"
            if i % 2:
                tmp.mkdir()
                (tmp / "own.txt").write_bytes(b"own\n")
            else:
                tmp.symlink_to(outside, target_is_directory=True)
            target = src / "sub"
            aside = tmp_path / f"aside{i}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(target, aside)
            os.rename(tmp, target)
            if aside.is_symlink():
                aside.unlink()
            elif aside.exists():
                (aside / "own.txt").unlink()
                aside.rmdir()
            i += 1

    t = threading.Thread(target=swapper)
    t.start()
    try:
        for _ in range(200):
            out = io.BytesIO()
            pack_dir(src, out)
            out.seek(0)
            with tarfile.open(fileobj=out, mode="r") as tar:
                for m in tar.getmembers():
                    assert m.name in ("sub", "sub/own.txt"), m.name
    finally:
        stop.set()
        t.join(10)


def test_a_big_file_swapped_before_the_writer_streams_it_is_skipped(tmp_path: Path) -> None:
    """Files over EAGER_LIMIT are chunked later, by the writer, from a fresh open: that open is safe too."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    big = root / "d" / "big.md"
    big.write_bytes(b"inside text\n" * (EAGER_LIMIT // 12 + 10))
    outside = tmp_path / "outside.md"
    outside.write_bytes(b"OUTSIDE xx\n\n" * (EAGER_LIMIT // 12 + 10))  # same size
    job = prepare_index("alpha", "root", "d/big.md", big, None, ChunkParams(), bulk=False)
    assert isinstance(job, IndexJob) and not isinstance(job.chunks, list), "a streamed job"
    st = big.stat()
    os.utime(outside, ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / "link").symlink_to(outside)
    os.replace(tmp_path / "link", big)
    with pytest.raises(SkipFile) as err:
        list(job.chunks)
    assert err.value.reason == "symlink"
    again = prepare_index("alpha", "root", "d/big.md", big, None, ChunkParams(), bulk=False)
    assert isinstance(again, IndexJob) and again.skipped == "symlink" and list(again.chunks) == []


def test_a_fifo_as_vault_passphrase_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pass")
    result: list[BaseException] = []

    def load() -> None:
        try:
            load_passphrase(tmp_path / "pass")
        except VaultError as exc:
            result.append(exc)

    t = threading.Thread(target=load, daemon=True)  # were it stuck on the FIFO, the run still ends
    t.start()
    t.join(10)
    assert not t.is_alive(), "load_passphrase blocked on a FIFO"
    assert result and "not a regular file" in str(result[0])


def test_split_relative_drops_empty_and_dot_parts_and_refuses_escapes() -> None:
    from koradaemon.errors import PathError
    from koradaemon.fsopen import split_relative

    assert split_relative("a/b/c.md") == ("a", "b", "c.md")
    assert split_relative("a//b/./c.md") == ("a", "b", "c.md")
    assert split_relative("./a/") == ("a",)
    assert split_relative("a\\b") == ("a\\b",)  # a backslash is part of a name
    assert split_relative("...") == ("...",)
    for bad in ("", "/etc/passwd", "a/../b", "..", "a/\x00", ".", "./", "//"):
        with pytest.raises(PathError):
            split_relative(bad)
