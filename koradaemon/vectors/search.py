"""The ``search`` operation's modes: keyword (BM25), vector, hybrid (reciprocal rank fusion).

No numpy here: with vectors disabled the keyword path imports nothing more.
The default mode is hybrid once the agency has vectors, keyword before that.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import QueryError, UsageError
from ..index.store import AgencyStore
from . import MODES, VectorsUnavailable
from .fusion import rrf

if TYPE_CHECKING:
    from .service import VectorService

_WORD = re.compile(r"\w+")


def resolve_mode(service: VectorService | None, agency_id: str, mode: str) -> str:
    if mode and mode not in MODES:
        raise UsageError(f"search mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode:
        return mode
    return "hybrid" if service is not None and service.has_vectors(agency_id) else "keyword"


def _keyword_leg(store: AgencyStore, query: str, depth: int) -> list[dict[str, Any]]:
    """BM25 hits; a query that is not valid FTS syntax is retried as its words, each quoted."""
    try:
        return [h.to_dict() for h in store.search(query, depth)]
    except QueryError:
        words = _WORD.findall(query)
        if not words:
            return []
        try:
            return [h.to_dict() for h in store.search(" ".join(f'"{w}"' for w in words), depth)]
        except QueryError:
            return []


def run_search(service: VectorService | None, store: AgencyStore, query: str, limit: int,
               mode: str = "") -> dict[str, Any]:
    mode = resolve_mode(service, store.agency_id, mode)
    if mode == "keyword":
        return {"mode": mode, "hits": [h.to_dict() for h in store.search(query, limit)]}
    if not query.strip():
        raise QueryError("empty search query")
    if service is None:
        raise VectorsUnavailable("vector search is off in this daemon (vectors.enabled: false)",
                                 hint="use --mode keyword, or enable vectors in the configuration")
    if mode == "vector":
        return {"mode": mode, "hits": service.search(store.agency_id, query, limit)}
    depth = max(30, 3 * limit)
    vector = service.search(store.agency_id, query, depth)
    keyword = _keyword_leg(store, query, depth)
    return {"mode": mode, "hits": rrf({"keyword": keyword, "vector": vector}, limit)}
