"""No import cycles in the package: the check runs as a user would run it (python -m)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "koradaemon.devtools.import_cycles", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_package_has_no_import_cycle() -> None:
    res = run_check()
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "no import cycles in koradaemon"


def test_the_check_finds_cycles_lazy_ones_included(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")  # lazy: still a dependency
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n")
    (pkg / "d.py").write_text("from . import c\n")  # c -> d only for typing: not a cycle
    res = run_check(str(pkg))
    assert res.returncode == 1
    assert res.stdout.strip().splitlines() == ["import cycle: pkg.a <-> pkg.sub.b"]
