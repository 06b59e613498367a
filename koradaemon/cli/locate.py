"""Where the config file and the data root are, without creating anything.

Config search order: ``--config``, ``$KORA_CONFIG``, ``$CONFIGURATION_DIRECTORY/koradaemon.yaml``
(set by systemd), ``./koradaemon.yaml``, ``$XDG_CONFIG_HOME/koradaemon/koradaemon.yaml``
(``~/.config``), ``/etc/koradaemon/koradaemon.yaml``.

Data root: ``--data-root``, ``$KORA_DATA_ROOT``, ``$STATE_DIRECTORY``, then beside the config, except for
the two standard config folders, whose data roots are the ones systemd gives their units:
``~/.config/koradaemon`` → ``$XDG_STATE_HOME/koradaemon`` (``~/.local/state``) and ``/etc/koradaemon`` →
``/var/lib/koradaemon``. Only stdlib string and ``os`` work here: this runs on every CLI call.
"""

from __future__ import annotations

import os

from ..errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from ..config_model import Config

CONFIG_NAME = "koradaemon.yaml"
SYSTEM_CONFIG_DIR = os.sep + os.path.join("etc", "koradaemon")
SYSTEM_DATA_ROOT = os.sep + os.path.join("var", "lib", "koradaemon")


def user_config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "koradaemon")


def user_data_root() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "koradaemon")


def candidates() -> list[tuple[str, str]]:
    """(path, where it came from), in search order."""
    out = []
    if os.environ.get("KORA_CONFIG"):
        out.append((os.environ["KORA_CONFIG"], "$KORA_CONFIG"))
    if os.environ.get("CONFIGURATION_DIRECTORY"):
        out.append((os.path.join(os.environ["CONFIGURATION_DIRECTORY"].split(":")[0], CONFIG_NAME),
                    "$CONFIGURATION_DIRECTORY"))
    out.append((CONFIG_NAME, "the current folder"))
    out.append((os.path.join(user_config_dir(), CONFIG_NAME), "the user config folder"))
    out.append((os.path.join(SYSTEM_CONFIG_DIR, CONFIG_NAME), "the system config folder"))
    return out


def find_config(explicit: str | None) -> str:
    """The config file to use; a clear ConfigError (78) naming every place looked at when there is none."""
    if explicit:
        if not os.path.isfile(explicit):
            what = "is a folder" if os.path.isdir(explicit) else "does not exist"
            raise ConfigError(f"config file {explicit} {what}", hint="give an existing file with -c/--config")
        return os.path.abspath(explicit)
    tried = []
    for path, origin in candidates():
        if os.path.isfile(path):
            return os.path.abspath(path)
        if origin.startswith("$"):  # an explicit setting that points nowhere is an error, not a fallthrough
            raise ConfigError(f"{origin} names {path}, which does not exist")
        tried.append(path)
    raise ConfigError(f"no configuration file found (looked at {', '.join(tried)})",
                      hint="create one with 'koradaemon init' or pass -c FILE")


def data_root(config_path: str, explicit: str | None) -> tuple[str, str]:
    """(absolute data root, where it came from); it is never created here."""
    for value, origin in ((explicit, "--data-root"), (os.environ.get("KORA_DATA_ROOT"), "$KORA_DATA_ROOT"),
                          (os.environ.get("STATE_DIRECTORY"), "$STATE_DIRECTORY")):
        if value:
            return os.path.abspath(value.split(":")[0] if origin == "$STATE_DIRECTORY" else value), origin
    folder = os.path.dirname(os.path.realpath(config_path))
    if folder == os.path.realpath(user_config_dir()):
        return user_data_root(), "the user state folder"
    if folder == SYSTEM_CONFIG_DIR:
        return SYSTEM_DATA_ROOT, "the system state folder"
    return folder, "the config's folder"


def check_data_root(root: str, origin: str) -> None:
    """Refuse a data root that does not exist or is not a folder (a typo must not start a new one)."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise ConfigError(f"data root {root} (from {origin}) does not exist",
                  hint="check the spelling, or create one with 'koradaemon init'") from None
    except OSError as exc:
        raise ConfigError(f"data root {root} (from {origin}): {exc.strerror}") from None
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"data root {root} (from {origin}) is not a folder")


def load_config_full(config_path: str, root: str, *, runtime_checks: bool = True) -> Config:
    """The whole configuration, every check run. ``runtime_checks=False`` for client commands: they
    skip the checks of the daemon's own environment (its passphrase file, the agent's PATH)."""
    from pathlib import Path

    from ..config import load_config

    return load_config(Path(config_path), data_root=Path(root), runtime_checks=runtime_checks)
