"""The vector thread's turns while the keyword pipeline has work: it waits for an idle pipeline
before a batch (BUSY_WAIT_S at least), yet keeps embedding while the pipeline stays busy."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.config import parse_config
from koradaemon.index.db import open_db
from koradaemon.index.store import AgencyStore
from koradaemon.vectors import service as service_mod
from koradaemon.vectors.service import VectorService, start_vectors


def service(tmp_path: Path, busy: threading.Event) -> VectorService:
    cfg = parse_config("agencies: [{agency_id: alpha, roots: [notes]}]\nvectors: {enabled: true}",
                       data_root=tmp_path, runtime_checks=False)
    open_db(tmp_path / "kora_kernel.db").close()
    return VectorService(cfg, tmp_path / "kora_kernel.db", lambda a: False, busy.is_set)


def test_wait_turn_waits_while_busy_and_ends_when_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "BUSY_WAIT_S", 0.3)
    busy = threading.Event()
    svc = service(tmp_path, busy)
    assert svc._wait_turn() < 0.1 and svc._calm  # idle: no wait at all
    busy.set()
    assert svc._wait_turn() >= 0.3 and not svc._calm  # busy throughout: BUSY_WAIT_S, then a forced turn
    svc._owed = 0.6
    assert svc._wait_turn() >= 0.6  # what the last batch owes, when longer
    svc._owed = 5.0
    threading.Timer(0.1, busy.clear).start()
    waited = svc._wait_turn()  # the pipeline goes idle: the batch starts once it stayed idle a while
    assert 0.1 + service_mod.IDLE_SETTLE_S <= waited < 4.0 and svc._calm and svc._owed == 0.0


def test_short_idle_moments_do_not_start_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A burst has idle moments (between the crawler's lists); a batch waits for a settled pipeline.
    monkeypatch.setattr(service_mod, "BUSY_WAIT_S", 0.6)
    looks = 0

    def flickering() -> bool:
        nonlocal looks
        looks += 1
        return looks % 3 != 0  # idle at every third look, for one look

    cfg = parse_config("agencies: [{agency_id: alpha, roots: [notes]}]\nvectors: {enabled: true}",
                       data_root=tmp_path, runtime_checks=False)
    svc = VectorService(cfg, tmp_path / "kora_kernel.db", lambda a: False, flickering)
    assert svc._wait_turn() >= 0.6 and not svc._calm and looks > 10


def test_a_busy_pipeline_delays_each_batch_but_vectors_keep_up(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "BUSY_WAIT_S", 0.4)
    monkeypatch.setattr(service_mod, "LOAD_DEFER_S", 0.05)  # the load's own waits for idle (tested elsewhere)
    (tmp_path / "notes").mkdir()
    kernel = open_db(tmp_path / "kora_kernel.db")
    with kernel:
        for i in range(3):
            body = (f"note {i} about rivers and boats " * 300).encode()  # 9 KB: one batch each (below)
            (tmp_path / "notes" / f"n{i}.md").write_bytes(body)
            digest = hashlib.sha256(body).hexdigest()
            AgencyStore(kernel, "alpha").put_document("notes", f"n{i}.md", len(body), 1, digest,
                                                      [(0, len(body), digest, body.decode(), 1, "")])
    kernel.close()
    busy = threading.Event()
    busy.set()  # a burst is being indexed all along
    cfg = parse_config("agencies: [{agency_id: alpha, roots: [notes]}]\n"
                       "vectors: {enabled: true, passage_bytes: 1024, batch_passages: 8}",
                       data_root=tmp_path, runtime_checks=False)
    svc = start_vectors(cfg, tmp_path / "kora_kernel.db", lambda a: False, busy.is_set)
    try:
        assert svc.wait_loaded(60) and svc.state == "ready", svc.error
        loaded = time.monotonic()
        av = svc.agencies["alpha"]
        wait_for(lambda: av.counters["chunks"] >= 1, timeout=30, what="the first batch")
        first = time.monotonic()
        wait_for(lambda: av.counters["chunks"] == 3, timeout=30, what="all three chunks")
        done = time.monotonic()
    finally:
        svc.stop()
    # each batch waited for the pipeline, BUSY_WAIT_S at least; still every chunk got its vectors
    assert first - loaded >= 0.4 * 0.9 and done - first >= 2 * 0.4 * 0.9
    assert av.counters["errors"] == 0 and len(av.index) == av.counters["passages"] > 0
