"""Applying a new configuration on SIGHUP, as far as it can be applied live.

Agencies added, removed or with changed roots/ignore rules get their watchers
restarted and a reconcile crawl; settings that need a restart (database path,
socket, audit directory) are reported, and the old values stay in force.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ..config_model import Config

if TYPE_CHECKING:
    from .assembler import Daemon

log = structlog.get_logger(__name__)

RESTART_ONLY = ("index", "audit", "control", "vault", "agent")


def apply_reload(daemon: Daemon, new: Config) -> None:
    old = daemon.cfg
    needs_restart = [s for s in RESTART_ONLY if getattr(old, s) != getattr(new, s)]
    if needs_restart:
        log.warning("reload_needs_restart", sections=needs_restart,
                    hint="these sections keep their old values until the daemon restarts")
        new = _keep(new, old, needs_restart)
    old_ids = {a.agency_id for a in old.agencies}
    new_ids = {a.agency_id for a in new.agencies}
    removed = old_ids - new_ids
    added = new_ids - old_ids
    if added - set(daemon.audit.agency_ids):
        log.warning("reload_new_agency_needs_restart", agencies=sorted(added))
        new = _drop_agencies(new, added)
        added = set()
    if new.log != old.log:
        from ..logsetup import configure_logging

        configure_logging(level=new.log.level, fmt=new.log.format, file=new.path(new.log.file))
        log.info("logging_reconfigured", level=new.log.level, format=new.log.format)
    changed = {a.agency_id for a in new.agencies if a.agency_id in old_ids and old.agency(a.agency_id) != a}
    for agency_id in removed | changed:
        daemon.watchset.stop_agency(agency_id)
    daemon.cfg = new
    daemon.watchset.cfg = new
    daemon.indexer.root_paths = daemon.watchset.root_paths()
    for agency_id in changed | added:
        if not daemon.lockdown.is_locked(agency_id):
            daemon._start_agency(agency_id)
    for agency_id in sorted(new_ids & old_ids):
        try:
            daemon.audit_append(agency_id, "config_reload", {"changed": agency_id in changed})
        except Exception as exc:
            log.error("reload_audit_failed", agency_id=agency_id, error=str(exc))
    log.info("config_reloaded", changed=sorted(changed), removed=sorted(removed))


def _keep(new: Config, old: Config, sections: list[str]) -> Config:
    import dataclasses

    return dataclasses.replace(new, **{s: getattr(old, s) for s in sections})


def _drop_agencies(new: Config, ids: set[str]) -> Config:
    import dataclasses

    return dataclasses.replace(new, agencies=tuple(a for a in new.agencies if a.agency_id not in ids))
