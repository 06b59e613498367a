"""Reciprocal rank fusion of ranked hit lists (pure functions, no numpy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RRF_K = 60  # the usual constant: rank 1 scores 1/61, so no single list dominates


ChunkKey = tuple[str, str, int]


def chunk_key(hit: Mapping[str, Any]) -> ChunkKey:
    """(root, path, seq) names a chunk within an agency (hits carry no chunk id: see index/search.py)."""
    return str(hit["root"]), str(hit["path"]), int(hit["seq"])


def rrf(lists: Mapping[str, Sequence[dict[str, Any]]], limit: int, k: int = RRF_K) -> list[dict[str, Any]]:
    """Fuse hit lists by chunk: score = sum over lists of 1 / (k + rank). Ties keep the first list's order."""
    scores: dict[ChunkKey, float] = {}
    ranks: dict[ChunkKey, dict[str, int]] = {}
    first: dict[ChunkKey, dict[str, Any]] = {}
    for name, hits in lists.items():
        for rank, hit in enumerate(hits, start=1):
            cid = chunk_key(hit)
            if name in ranks.get(cid, {}):
                continue  # a list names a chunk once
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank)
            ranks.setdefault(cid, {})[name] = rank
            first.setdefault(cid, hit)
    order = sorted(scores, key=lambda cid: -scores[cid])
    return [{**first[cid], "score": round(scores[cid], 6), "ranks": ranks[cid]} for cid in order[:limit]]
