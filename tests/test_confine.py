"""The client-path resolver: symlinks at every level of a restore target or context folder are
followed and the result confined; a real daemon refuses them over the socket and the CLI too."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import DaemonProc

from koradaemon.config import parse_config
from koradaemon.config_model import Config
from koradaemon.confine import ensure_dirs, resolve_client_path
from koradaemon.errors import KoraError, PathError

CONFIG = """\
version: 1
vault: {passphrase_file: secrets/pass}
agencies:
  - agency_id: alpha
    roots: [alpha/notes]
    state_dirs: [alpha/state]
  - agency_id: beta
    roots: [beta/docs]
"""

# Where each planted symlink points, and the words of the error it must give.
PLACES = {
    "outside": ("leads outside the data root", None),
    "alpha/notes": ("inside the watched root 'alpha/notes'", None),
    "beta/docs": ("inside the watched root 'beta/docs'", None),
    "beta/docs/sub": ("inside the watched root 'beta/docs'", None),
    "audit": ("inside the audit folder", None),
    "snapshots": ("inside the snapshot folder", None),
    "run/tokens": ("inside the token folder", None),
    "run": ("inside the folder of the control socket", None),
    "logs": ("inside the folder of the log file", None),
    "secrets": ("inside the folder of the vault passphrase", None),
}


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    root = tmp_path / "data"
    for d in ("alpha/notes", "alpha/state", "beta/docs/sub", "audit", "snapshots", "run/tokens", "logs",
              "secrets", "safe"):
        (root / d).mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "secrets" / "pass").write_text("correct horse battery staple\n")
    (root / "secrets" / "pass").chmod(0o600)
    return parse_config(CONFIG, data_root=root)


def target_of(cfg: Config, place: str) -> Path:
    return cfg.data_root.parent / "outside" if place == "outside" else cfg.data_root / place


def plant(cfg: Config, level: int, place: str) -> str:
    """A client path of three components whose component ``level`` (0-2) is a symlink to ``place``;
    the components after it name folders inside wherever the link leads."""
    names = ["l0", "l1", "l2"]
    here = cfg.data_root
    for i, name in enumerate(names):
        if i == level:
            (here / name).symlink_to(target_of(cfg, place), target_is_directory=True)
            return "/".join(names)
        here = here / name
        here.mkdir(exist_ok=True)
    raise AssertionError(level)


def test_a_plain_new_folder_resolves_to_itself(cfg: Config) -> None:
    assert resolve_client_path(cfg, "restored/x", what="restore target") == Path(
        os.path.realpath(cfg.data_root)) / "restored" / "x"


def test_a_symlink_that_stays_in_a_neutral_place_is_resolved(cfg: Config) -> None:
    (cfg.data_root / "a").mkdir()
    (cfg.data_root / "a" / "in").symlink_to(cfg.data_root / "safe", target_is_directory=True)
    real = resolve_client_path(cfg, "a/in/new", what="restore target")
    assert real == Path(os.path.realpath(cfg.data_root / "safe" / "new"))


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("place", sorted(PLACES))
def test_symlinks_at_every_level_are_followed_and_confined(cfg: Config, level: int, place: str) -> None:
    rel = plant(cfg, level, place)
    with pytest.raises(PathError, match=PLACES[place][0]):
        resolve_client_path(cfg, rel, what="restore target")
    with pytest.raises(PathError, match=PLACES[place][0]):
        resolve_client_path(cfg, rel + "/deeper", what="restore target")


@pytest.mark.parametrize(("rel", "words"), [
    ("/etc", "absolute"), ("../x", "'..'"), ("a/../../x", "'..'"), ("a\x00b", "NUL"), (".", "data root itself"),
    ("alpha", "encloses the watched root 'alpha/notes'"), ("beta", "encloses the watched root 'beta/docs'"),
    ("kora_kernel.db", "inside the database"), ("logs/x", "inside the folder of the log file"),
])
def test_text_checks_and_enclosing_a_protected_place(cfg: Config, rel: str, words: str) -> None:
    with pytest.raises(PathError, match=words):
        resolve_client_path(cfg, rel, what="restore target")


def test_a_symlinked_data_root_is_fine(cfg: Config, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(cfg.data_root, target_is_directory=True)
    via_alias = parse_config(CONFIG, data_root=alias)
    assert resolve_client_path(via_alias, "new", what="t") == Path(os.path.realpath(cfg.data_root)) / "new"
    with pytest.raises(PathError, match="inside the watched root"):
        resolve_client_path(via_alias, "alpha/notes/x", what="t")


def test_ensure_dirs_refuses_a_component_swapped_for_a_symlink_after_the_check(cfg: Config) -> None:
    real = resolve_client_path(cfg, "new/deep/target", what="restore target")
    (cfg.data_root / "new").symlink_to(cfg.data_root.parent / "outside", target_is_directory=True)
    with pytest.raises(PathError, match="'new' is a symlink"):
        ensure_dirs(cfg, real)
    assert list((cfg.data_root.parent / "outside").iterdir()) == [], "nothing made outside"
    (cfg.data_root / "new").unlink()
    (cfg.data_root / "new").write_text("a file, not a folder")
    with pytest.raises(PathError, match="'new' is not a folder"):
        ensure_dirs(cfg, real)
    (cfg.data_root / "new").unlink()
    ensure_dirs(cfg, real)
    assert real.is_dir() and (real.stat().st_mode & 0o777) == 0o700


# -- through a running daemon and the CLI -------------------------------------------------------

def test_restore_and_put_context_refuse_symlinked_paths(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "root")
    (d.root / "alpha" / "state" / "s.json").write_text('{"turn": 1}\n')
    outside = tmp_path / "outside"
    outside.mkdir()
    try:
        d.start()
        d.client_call("snapshot")
        (d.root / "via").mkdir()
        (d.root / "via" / "out").symlink_to(outside, target_is_directory=True)
        (d.root / "via" / "beta").symlink_to(d.root / "beta" / "notes", target_is_directory=True)
        (d.root / "via" / "own").symlink_to(d.root / "alpha" / "notes", target_is_directory=True)
        for target, words in (("via/out/x", "outside the data root"), ("via/beta/x", "watched root 'beta/notes'"),
                              ("via/own", "watched root 'alpha/notes'"), ("run/x", "control socket"),
                              ("beta", "encloses")):
            with pytest.raises(KoraError, match=words) as err:
                d.client_call("restore", target=target)
            assert err.value.code == "path"
        assert list(outside.iterdir()) == [] and not (d.root / "beta" / "notes" / "x").exists()
        res = d.client_call("restore", target="restored/here")
        assert res["restored"]
        assert (d.root / "restored" / "here" / "state0" / "s.json").read_text() == '{"turn": 1}\n'
        # A symlinked context/ folder in the state dir, out of the data root, then into beta's root.
        for link_to in (outside, d.root / "beta" / "notes"):
            ctx = d.root / "alpha" / "state" / "context"
            if ctx.is_symlink():
                ctx.unlink()
            ctx.symlink_to(link_to, target_is_directory=True)
            with pytest.raises(KoraError) as err:
                d.client_call("vault.put_context", name="planted", content="x")
            assert err.value.code == "path", err.value
            assert not (link_to / "planted").exists()
        (d.root / "alpha" / "state" / "context").unlink()
        assert d.client_call("vault.put_context", name="ok", content="fine")["bytes"] == 4
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    # The CLI without a daemon: the same resolver, one clear line, no traceback.
    res = d.cli("restore", "--agency", "alpha", "--target", "via/out/y")
    assert res.returncode == 65 and "outside the data root" in res.stderr and "Traceback" not in res.stderr
    assert list(outside.iterdir()) == []
    res = d.cli("restore", "--agency", "alpha", "--target", "again", "--json", check=True)
    assert json.loads(res.stdout)["restored"]
