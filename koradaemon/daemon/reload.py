"""What a SIGHUP may change live, and what needs a restart.

Live: agencies (added, removed, roots, ignore rules, state dirs), `watch` timings, `log`,
`shutdown_timeout_s`, and the vault's snapshot timings. Everything else is fixed at start; a
reload that changes any of it is refused whole (logged, nothing applied), never half-applied.
"""

from __future__ import annotations

from ..config_model import Config

# (section, field or None for the whole section) that only a restart can change
RESTART_ONLY: tuple[tuple[str, str | None], ...] = (
    ("index", None),
    ("audit", None),
    ("control", None),
    ("agent", None),
    ("websocket", None),
    ("nats", None),
    ("watch", "queue_max"),
    ("vault", "enabled"),
    ("vault", "passphrase_file"),
    ("vault", "kdf_iterations"),
    ("vault", "dir"),
    ("vault", "keep_last"),
    ("vault", "idle_lock_s"),
)


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The restart-only settings that differ between ``old`` and ``new`` (``section`` or ``section.key``)."""
    out: list[str] = []
    for section, key in RESTART_ONLY:
        a, b = getattr(old, section), getattr(new, section)
        if key is None:
            if a != b:
                out.append(section)
        elif getattr(a, key) != getattr(b, key):
            out.append(f"{section}.{key}")
    if old.data_root != new.data_root:
        out.append("data_root")
    return out
