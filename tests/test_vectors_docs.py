"""docs/vectors.md: its configuration block is the real default, and its commands run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from conftest import DaemonProc, wait_for
from test_vectors_daemon import CAR, caught_up

from koradaemon.config import parse_config
from koradaemon.config_model import VectorsConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "vectors.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_documented_configuration_is_the_default_and_parses(tmp_path: Path) -> None:
    (block,) = blocks("yaml")
    cfg = parse_config(block + "agencies: [{agency_id: alpha, roots: [notes]}]\n", data_root=tmp_path,
                       runtime_checks=False)
    assert cfg.vectors == VectorsConfig()
    assert set(yaml.safe_load(block)["vectors"]) == set(VectorsConfig.__dataclass_fields__)


def test_documented_commands_run_as_written(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, extra="vectors: {enabled: true, poll_s: 0.05}")
    (tmp_path / "alpha" / "notes" / "car.md").write_text(CAR)
    (tmp_path / "alpha" / "notes" / "other.md").write_text("Minutes of the parish council on the new library.\n")
    try:
        d.start()
        wait_for(lambda: caught_up(d), 60, 0.1, "vectors caught up")
        (block,) = blocks("sh")
        lines = [ln for ln in block.splitlines() if ln.startswith("koradaemon ")]
        assert len(lines) == 4
        for line in lines:
            res = d.cli(*shlex.split(line)[1:])
            assert res.returncode == 0, (line, res.stderr)
            if " search " in line:
                files = [ln.strip() for ln in res.stdout.splitlines() if ln.startswith("alpha/notes/")]
                assert files[0] == "alpha/notes/car.md", (line, res.stdout)  # the best hit's file comes first
            else:
                assert "vectors: ready" in res.stdout and "passages" in res.stdout, res.stdout
    finally:
        d.stop()
