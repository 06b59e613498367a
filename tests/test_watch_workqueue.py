"""WorkQueue: coalescing per path, FIFO, full → RESCAN, per-path exclusivity, stop wakes consumers."""

from __future__ import annotations

import threading

from conftest import wait_for

from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.workqueue import WorkQueue

K = ChangeKind


def ch(kind: ChangeKind, path: str, dest: str | None = None, root: str = "r", bulk: bool = False) -> FileChange:
    return FileChange(kind, "a1", root, path, dest, bulk)


def drain(q: WorkQueue) -> list[tuple[str, str, str | None]]:
    out = []
    while (c := q.get(timeout=0)) is not None:
        out.append((c.kind.name, c.path, c.dest_path))
        q.task_done()
    return out


def test_index_then_delete_is_delete_and_keeps_first_arrival_order() -> None:
    q = WorkQueue()
    for c in (ch(K.INDEX, "a"), ch(K.INDEX, "b"), ch(K.DELETE, "a"), ch(K.INDEX, "c"), ch(K.INDEX, "b")):
        q.put(c)
    assert q.depth() == 3 and q.coalesced == 2
    assert drain(q) == [("DELETE", "a", None), ("INDEX", "b", None), ("INDEX", "c", None)]


def test_delete_then_index_is_index_and_live_beats_bulk() -> None:
    q = WorkQueue()
    q.put(ch(K.DELETE, "a", bulk=True))
    q.put(ch(K.INDEX, "a"))
    change = q.get(timeout=0)
    assert change is not None and change.kind is K.INDEX and change.bulk is False


def test_move_with_pending_index_becomes_delete_plus_index() -> None:
    q = WorkQueue()
    q.put(ch(K.INDEX, "a"))
    q.put(ch(K.MOVE, "a", "b"))
    assert drain(q) == [("DELETE", "a", None), ("INDEX", "b", None)]


def test_move_seals_earlier_slots_so_later_events_come_after_it() -> None:
    q = WorkQueue()
    q.put(ch(K.INDEX, "b"))
    q.put(ch(K.MOVE, "a", "b"))
    q.put(ch(K.INDEX, "b"))  # must not merge into the slot before the move
    assert drain(q) == [("INDEX", "b", None), ("MOVE", "a", "b"), ("INDEX", "b", None)]


def test_full_queue_collapses_into_one_rescan_per_root() -> None:
    q = WorkQueue(maxsize=3)
    for i in range(10):
        q.put(ch(K.INDEX, f"f{i}"))
    q.put(ch(K.INDEX, "other", root="r2"))
    q.put(ch(K.INDEX, "f0"))  # coalesces: no new slot needed
    stats = q.stats()
    assert stats["overflow_rescans"] == 2 and stats["dropped"] == 8 and stats["depth"] == 5
    kinds = [(c.kind.name, c.root) for c in (q.get(timeout=0) for _ in range(5)) if c is not None]
    assert kinds[:3] == [("INDEX", "r")] * 3
    assert sorted(kinds[3:]) == [("RESCAN", "r"), ("RESCAN", "r2")]


def test_rescan_is_queued_once() -> None:
    q = WorkQueue()
    q.put(FileChange.rescan("a1", "r"))
    q.put(FileChange.rescan("a1", "r"))
    assert drain(q) == [("RESCAN", "", None)]


def test_a_path_in_progress_is_not_handed_to_a_second_consumer() -> None:
    q = WorkQueue()
    q.put(ch(K.INDEX, "a"))
    first = q.get(timeout=0)  # this thread works on "a"
    q.put(ch(K.INDEX, "a"))
    q.put(ch(K.INDEX, "b"))
    got: list[FileChange | None] = []
    t = threading.Thread(target=lambda: got.extend([q.get(timeout=5), q.get(timeout=0.05)]))
    t.start()
    t.join(10)
    assert first is not None and [c.path if c else None for c in got] == ["b", None]
    q.task_done()  # "a" finished: its second change may go now
    second = q.get(timeout=1)
    assert second is not None and second.path == "a"


def test_tree_change_waits_for_work_in_the_same_root() -> None:
    q = WorkQueue()
    q.put(ch(K.INDEX, "d/x"))
    assert q.get(timeout=0) is not None
    q.put(ch(K.DELETE_TREE, "d"))
    assert q.get(timeout=0.05) is None
    q.task_done()
    tree = q.get(timeout=1)
    assert tree is not None and tree.kind is K.DELETE_TREE


def test_stop_wakes_a_blocked_consumer_and_wait_idle() -> None:
    q = WorkQueue()
    q.put(ch(K.INDEX, "a"))
    assert not q.wait_idle(0.01)
    assert q.get(timeout=0) is not None
    q.task_done()
    assert q.wait_idle(1)
    result: list[FileChange | None] = [ch(K.INDEX, "sentinel")]
    t = threading.Thread(target=lambda: result.__setitem__(0, q.get()))
    t.start()
    wait_for(lambda: t.is_alive(), 1)
    q.stop()
    t.join(5)
    assert not t.is_alive() and result == [None]


def test_pending_counts_one_agencys_crawl_changes_rescans_and_waits() -> None:
    q = WorkQueue()
    crawl = [FileChange(K.INDEX, "a1", "r", p, None, True, size) for p, size in (("x", 10), ("y", 5), ("z", 7))]
    for c in (*crawl, FileChange(K.DELETE, "a1", "r", "gone", None, True), ch(K.INDEX, "live"),
              FileChange.rescan("a1", "r"), FileChange(K.INDEX, "other", "r", "x", None, True, 99),
              ch(K.INDEX, "late")):
        q.put(c)
    assert q.pending("a1") == {"queued": 7, "in_flight": 0, "crawl": 4, "crawl_files": 3, "crawl_bytes": 22,
                               "rescans": 1}
    assert q.pending("nobody") == {"queued": 0, "in_flight": 0, "crawl": 0, "crawl_files": 0, "crawl_bytes": 0,
                                   "rescans": 0}
    q.put(ch(K.INDEX, "y"))  # a live event for a crawled file: one slot, no longer a crawl change
    first = q.get(timeout=0)  # x, being worked on
    assert first is not None and first.path == "x"
    assert q.pending("a1") == {"queued": 6, "in_flight": 1, "crawl": 3, "crawl_files": 2, "crawl_bytes": 17,
                               "rescans": 1}
    q.task_done()
    assert q.crawl_pending("a1") and q.crawl_pending("other") and not q.crawl_pending("nobody")
    while (c := q.get(timeout=0)) is not None:
        q.task_done()
        if c.agency_id == "a1" and c.kind is K.RESCAN:
            break
    assert q.pending("a1") == {"queued": 1, "in_flight": 0, "crawl": 0, "crawl_files": 0, "crawl_bytes": 0,
                               "rescans": 0}, "only a live change is left"
    assert not q.crawl_pending("a1") and q.crawl_pending("other")


def test_a_coalesced_change_keeps_its_first_queue_time() -> None:
    q = WorkQueue()
    first = ch(K.INDEX, "a")
    q.put(first)
    q.put(ch(K.INDEX, "a"))
    q.put(ch(K.DELETE, "a"))
    got = q.get(timeout=0)
    assert got is not None and got.kind is K.DELETE and got.queued == first.queued
