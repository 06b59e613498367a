"""The vector service: loads the model and extension, runs the embedding thread, answers searches.

Built by the daemon only when ``vectors.enabled`` is true. Nothing here delays keyword
indexing or search: the model loads on the vector thread; a missing or broken model or
extension leaves the service in state ``error`` with one clear line (status and the
log), and keyword search goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw
import structlog

from ..config_model import Config
from ..errors import KoraError
from ..index.retrieval import ChunkRef, StaleChunk, read_chunk_text
from . import VectorsUnavailable
from .heap import batch_mode, rest_mode
from .store import QUERY_MMAP_BYTES, VectorTables, connect

if TYPE_CHECKING:  # numpy and the model's libraries load on the vector thread, not in the daemon's start-up
    from .embedder import Embedder
    from .worker import AgencyVectors

log = structlog.get_logger(__name__)

MODEL_DIR = "models/wordllama"
# While the keyword pipeline has work, the embedding step takes at most this share of the time:
# a batch found the pipeline busy waits for it to be idle for IDLE_SETTLE_S (a burst has short idle
# moments between the crawler's lists), up to t * (1 - share) / share after a batch of t seconds
# or BUSY_WAIT_S, whichever is longer; then it runs anyway, so vectors keep following behind.
BUSY_SHARE = 0.1
BUSY_WAIT_S = 1.0
IDLE_SETTLE_S = 0.2
# The model loads once the keyword pipeline is idle (the start-up crawl done), or after this long.
LOAD_DEFER_S = 10.0
MIN_CANDIDATES = 512  # at 256 dimensions; fewer sign bits need more candidates (1024 at 128)
SNIPPET_CHARS = 240


class VectorService:
    def __init__(self, cfg: Config, kernel_db: Path, is_locked: Callable[[str], bool],
                 pipeline_busy: Callable[[], bool] | None = None) -> None:
        self.cfg = cfg
        self.kernel_db = kernel_db
        self.pipeline_busy = pipeline_busy
        self.vectors_db = cfg.path(cfg.vectors.database)
        self.is_locked = is_locked
        self.state = "loading"
        self.error: str | None = None
        self.model: str | None = None
        self.load_s: float | None = None
        self.embedder: Embedder | None = None
        self.agencies: dict[str, AgencyVectors] = {}
        self._stop = threading.Event()
        self._local = threading.local()
        self._owed = 0.0  # seconds the last batch owes the keyword pipeline if it has work (BUSY_SHARE)
        self._calm = True  # the last turn began with the pipeline idle (not forced by the wait's end)
        self._thread = threading.Thread(target=self._run, name="kora-vectors", daemon=True)

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_loaded(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.state == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.state != "loading"

    def _await_idle(self) -> float:
        """Wait (up to LOAD_DEFER_S) while the keyword pipeline has work; the seconds waited.

        Each step of the load holds the GIL for up to a few hundred ms (importing numpy most),
        so the load goes step by step, each when the pipeline is idle: a burst of files that
        arrives meanwhile is indexed first.
        """
        started = time.monotonic()
        while (self.pipeline_busy is not None and self.pipeline_busy()
               and time.monotonic() - started < LOAD_DEFER_S and not self._stop.wait(0.02)):
            pass
        return time.monotonic() - started

    def _load(self) -> apsw.Connection:
        started, waited = time.monotonic(), self._await_idle()
        from .codes import CodeIndex  # numpy: the longest step
        from .embedder import Embedder
        from .model import load_tokenizer, load_weights, prepare_cache_dir, quantize_rows
        from .worker import AgencyVectors

        waited += self._await_idle()
        rest_mode()  # the tokenizer's JSON parse: its temporaries mapped and unmapped
        vc = self.cfg.vectors
        files = prepare_cache_dir(self.cfg.path(MODEL_DIR))
        rows, scales = quantize_rows(load_weights(files, vc.dims))  # int8: half of float16's memory
        waited += self._await_idle()
        tokenizer = load_tokenizer(files)
        waited += self._await_idle()
        self.embedder = Embedder(tokenizer, rows, files.name, scales)
        waited += self._await_idle()
        self.model = f"{files.name}-{vc.dims}-int8"  # a change of model, dims or format rebuilds the tables
        conn = connect(self.vectors_db, self.kernel_db)
        for agency in self.cfg.agencies:
            tables = VectorTables(conn, agency.agency_id)
            if tables.ensure(self.model, vc.dims):
                log.info("vector_tables_created", agency_id=agency.agency_id, model=self.model)
            index = CodeIndex(vc.dims // 8)
            index.add(tables.all_codes())
            self.agencies[agency.agency_id] = AgencyVectors(tables, index, agency.roots)
            waited += self._await_idle()
        self.load_s = round(time.monotonic() - started - waited, 3)  # the load's own time, not the waits
        rest_mode()  # and what it freed handed back
        return conn

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_DEFER_S
        while self.pipeline_busy is not None and self.pipeline_busy() and time.monotonic() < deadline:
            if self._stop.wait(0.05):
                return
        try:
            conn = self._load()
        except KoraError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # an unexpected failure of a third-party loader is still one clear line
            self._fail(f"vectors cannot start: {type(exc).__name__}: {exc}")
            return
        self.state = "ready"
        log.info("vectors_ready", model=self.model, load_s=self.load_s,
                 passages={a: len(v.index) for a, v in self.agencies.items()})
        assert self.embedder is not None
        from .worker import Step

        vc = self.cfg.vectors
        # a second thread only while the keyword pipeline has nothing to do
        step = Step(self.embedder, self.cfg.data_root, vc.passage_bytes, vc.batch_passages,
                    split=lambda: self._calm and (self.pipeline_busy is None or not self.pipeline_busy()))
        was_busy = False
        try:
            while not self._stop.is_set():
                busy = False
                for agency_id, av in self.agencies.items():
                    if self._stop.is_set() or self.is_locked(agency_id):
                        continue
                    try:
                        self._wait_turn()
                        started = time.monotonic()
                        busy = step.run(av) or busy
                        self._owed = (time.monotonic() - started) * (1 - BUSY_SHARE) / BUSY_SHARE
                    except Exception as exc:  # one bad batch must not stop the thread
                        av.counters["errors"] += 1
                        log.error("vector_step_failed", agency_id=agency_id, error=f"{type(exc).__name__}: {exc}")
                        self._stop.wait(1.0)
                if busy and not was_busy:
                    batch_mode()  # keep batch memory between batches while catching up
                if not busy:
                    if was_busy:
                        rest_mode()  # caught up: give the batch memory back
                    self._stop.wait(vc.poll_s)
                was_busy = busy
        finally:
            self.embedder.close()
            conn.close()

    def _wait_turn(self) -> float:
        """Before a batch: if the keyword pipeline has work, wait until it has been idle for
        IDLE_SETTLE_S, at most what the last batch owes it or BUSY_WAIT_S, whichever is longer
        (then the turn is forced: not calm). Returns the seconds waited."""
        started = time.monotonic()
        self._calm = True
        if self.pipeline_busy is None or not self.pipeline_busy():
            self._owed = 0.0
            return 0.0
        deadline = started + max(self._owed, BUSY_WAIT_S)
        idle_since: float | None = None
        while not self._stop.wait(0.02):
            now = time.monotonic()
            if self.pipeline_busy():
                idle_since = None
            elif idle_since is None:
                idle_since = now
            if idle_since is not None and now - idle_since >= IDLE_SETTLE_S:
                break
            if now >= deadline:
                self._calm = False
                break
        self._owed = 0.0
        return time.monotonic() - started

    def _fail(self, message: str) -> None:
        self.state, self.error = "error", message
        log.error("vectors_unavailable", error=message, hint="keyword search goes on")

    # -- queries ----------------------------------------------------------------------
    def check(self) -> None:
        if self.state == "error":
            raise VectorsUnavailable(f"vector search is unavailable: {self.error}",
                                     hint="keyword search still works: --mode keyword")
        if self.state != "ready":
            raise VectorsUnavailable("vector search is not ready yet: the model is loading",
                                     hint="retry in a moment, or use --mode keyword")

    def has_vectors(self, agency_id: str) -> bool:
        av = self.agencies.get(agency_id)
        return self.state == "ready" and av is not None and len(av.index) > 0

    def _conn(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.vectors_db, self.kernel_db, QUERY_MMAP_BYTES)
            self._local.conn = conn
        return conn

    def search(self, agency_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` best chunks by their best passage's cosine similarity, live chunks only."""
        self.check()
        av = self.agencies.get(agency_id)
        if av is None or self.embedder is None:
            raise VectorsUnavailable(f"no vectors for agency {agency_id!r}")
        qvec = self.embedder.embed_query(query)
        if not qvec.any():
            return []
        wanted = max(MIN_CANDIDATES * 256 // self.embedder.dims, 16 * limit)
        cands = av.index.candidates(self.embedder.codes(qvec).tobytes(), wanted)
        tables = VectorTables(self._conn(), agency_id)
        hits: list[dict[str, Any]] = []
        seen: set[int] = set()
        for h in tables.rank(self.embedder.quantize(qvec).tobytes(), cands, 4 * limit):
            if h.chunk_id in seen:
                continue
            ref = ChunkRef(h.root, h.path, h.passage_offset, h.passage_length, h.passage_sha256)
            try:
                text = read_chunk_text(self.cfg.data_root, av.roots, ref)
            except StaleChunk:
                continue  # the file changed since: never served wrong
            seen.add(h.chunk_id)
            hits.append({  # no chunk id: a sequence shared by all agencies (see index/search.py)
                "root": h.root, "path": h.path, "seq": h.seq,
                "offset": h.chunk_offset, "length": h.chunk_length, "sha256": h.chunk_sha256,
                "snippet": " ".join(text.split())[:SNIPPET_CHARS], "score": round(h.similarity, 6),
                "passage": {"offset": h.passage_offset, "length": h.passage_length, "sha256": h.passage_sha256},
            })
            if len(hits) == limit:
                break
        return hits

    # -- status -----------------------------------------------------------------------
    def agency_status(self, agency_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "model": self.model, "dims": self.cfg.vectors.dims}
        if self.error:
            out["error"] = self.error
        av = self.agencies.get(agency_id)
        if av is not None:
            out.update(av.status())
            if self.state == "ready" and av.lag_chunks:
                out["state"] = "catching_up"
        return out

    def line(self) -> str:
        """A short phrase for systemd's STATUS= line."""
        if self.state != "ready":
            return f"vectors {self.state}" + (f": {self.error}" if self.error else "")
        lag = sum(av.lag_bytes for av in self.agencies.values())
        return f"vectors lag {lag / 1e6:.1f} MB" if lag else "vectors up to date"


def start_vectors(cfg: Config, kernel_db: Path, is_locked: Callable[[str], bool],
                  pipeline_busy: Callable[[], bool] | None = None) -> VectorService:
    service = VectorService(cfg, kernel_db, is_locked, pipeline_busy)
    service.start()
    return service
