"""First run without a repository checkout: `init` writes a config, a passphrase and a data root;
`print-unit` prints a service definition for this installation. Both read the files shipped in
the wheel (``koradaemon/data``)."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import sys
from importlib import resources
from pathlib import Path

from ..errors import ConfigError, UsageError
from . import locate

UNIT_FILES = {"systemd": "koradaemon.service", "systemd-user": "koradaemon-user.service",
              "launchd": "dev.kora.koradaemon.plist"}
PASSPHRASE = "secrets/vault-passphrase"
SYSTEM_CREDENTIAL = os.sep + os.path.join("etc", "credstore", "koradaemon.vault-passphrase")


def shipped(name: str) -> str:
    return (resources.files("koradaemon") / "data" / name).read_text(encoding="utf-8")


def _layout(args: argparse.Namespace) -> tuple[Path, Path, str]:
    """(config file, data root, how to name them on the next command line)."""
    if args.system:
        config = Path(locate.SYSTEM_CONFIG_DIR) / locate.CONFIG_NAME
        root = Path(args.data_root or locate.SYSTEM_DATA_ROOT)
    elif args.user:
        config = Path(locate.user_config_dir()) / locate.CONFIG_NAME
        root = Path(args.data_root or locate.user_data_root())
    elif args.data_root:
        root = Path(args.data_root).absolute()
        return root / locate.CONFIG_NAME, root, f"-c {shlex.quote(str(root / locate.CONFIG_NAME))}"
    else:
        raise UsageError("say where: --data-root DIR (one folder), --user or --system")
    root = root.absolute()
    standard = locate.data_root(str(config), None)[0] == str(root) and not os.environ.get("KORA_DATA_ROOT")
    return config, root, "" if standard else f"--data-root {shlex.quote(str(root))}"


def config_text(agency: str) -> str:
    """The shipped example config, set up for one agency whose folder is ``<agency>/notes``."""
    text = shipped("koradaemon.example.yaml")
    text = re.sub(r"(?m)^(\s*(?:- )?agency_id:\s*)demo\b", rf"\g<1>{agency}", text)
    text = re.sub(r"(?m)\bdemo/notes\b", f"{agency}/notes", text)
    header = ("# Written by 'koradaemon init'. Every path is relative to the data root; see the comments\n"
              "# below and 'koradaemon --help'. Put the files your agent works on under "
              f"{agency}/notes.\n")
    return header + text


def cmd_init(args: argparse.Namespace) -> int:
    from ..config import parse_config
    from ..paths import check_agency_id

    agency = check_agency_id(args.agency)
    config, root, how = _layout(args)
    if config.exists() and not args.force:
        raise UsageError(f"{config} already exists", hint="use --force to overwrite it")
    text = config_text(agency)
    secret = root / PASSPHRASE
    if args.system:  # the system unit hands the passphrase over as a credential (LoadCredential=)
        text = text.replace(f"passphrase_file: {PASSPHRASE}", "passphrase_file: credential:vault-passphrase")
        secret = Path(SYSTEM_CREDENTIAL)
    old = os.umask(0o077)
    try:
        made_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)  # init is what creates a data root
        try:  # the shipped template must be valid (the passphrase and roots come just below)
            cfg = parse_config(text, data_root=root, source=config, runtime_checks=False)
        except BaseException:
            if made_root:
                root.rmdir()
            raise
        for folder in (root, *(root / r for a in cfg.agencies for r in (*a.roots, *a.state_dirs)),
                       root / "secrets"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        config.parent.mkdir(parents=True, exist_ok=True, mode=0o755 if args.system else 0o700)
        _write(config, text.encode(), 0o644 if args.system else 0o600)
        secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not secret.exists():
            _write(secret, (secrets.token_urlsafe(32) + "\n").encode(), 0o600)
    finally:
        os.umask(old)
    run = f"koradaemon {how} run".replace("  ", " ")
    print(f"wrote {config}")
    print(f"data root {root} (0700), vault passphrase {secret} (0600: keep a copy somewhere safe)")
    print(f"put files under {root / cfg.agencies[0].roots[0]}, then start the daemon:")
    if args.system:
        print("  useradd --system --home-dir /var/lib/koradaemon --shell /usr/sbin/nologin koradaemon")
        print("  koradaemon print-unit systemd > /etc/systemd/system/koradaemon.service")
        print("  systemctl daemon-reload && systemctl enable --now koradaemon")
    else:
        print(f"  {run}")
    if args.user:
        print("or as a service: koradaemon print-unit systemd-user > ~/.config/systemd/user/koradaemon.service")
    print(f"then: koradaemon {how} search --agency {agency} WORD".replace("  ", " "))
    return 0


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def this_command() -> list[str]:
    """How this installation's koradaemon is started: its console script, else python -m koradaemon."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "koradaemon" and argv0.exists():
        return [str(argv0.absolute())]
    return [sys.executable, "-m", "koradaemon"]


def cmd_print_unit(args: argparse.Namespace) -> int:
    text = shipped(UNIT_FILES[args.kind])
    exe = this_command()
    if args.kind == "launchd":
        strings = "".join(f"\n    <string>{_xml(part)}</string>" for part in exe)
        text, n = re.subn(r"\n\s*<string>/usr/bin/env</string>\s*\n\s*<string>koradaemon</string>", strings, text)
        home = _xml(os.path.expanduser("~"))
        text = text.replace("/Users/YOU", home)
    else:
        text, n = re.subn(r"(?m)^ExecStart=(?:/usr/bin/env )?koradaemon ", f"ExecStart={shlex.join(exe)} ", text)
    if n != 1:
        raise ConfigError(f"the shipped {UNIT_FILES[args.kind]} has no koradaemon command line to fill in")
    sys.stdout.write(text)
    return 0


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
