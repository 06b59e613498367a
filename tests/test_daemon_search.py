"""The search operation through a real daemon's control socket: paging, totals, lines, highlights."""

from __future__ import annotations

import pytest
from conftest import DaemonProc, wait_for

from koradaemon.errors import QueryError, UsageError


def test_search_op_pages_and_describes_each_hit(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    for i in range(25):
        (notes / f"n{i:02d}.md").write_text(f"title {i}\n\nsome text\nthe saffron line {i}\n" + "saffron " * (i % 5))
    (notes / "code.py").write_text("def getUserName():\n    return 'x-ray'  # C++ style\n")
    daemon.start()
    wait_for(lambda: len(daemon.search("saffron")) == 10, 15, what="indexed")
    first = daemon.client_call("search", query="saffron", limit=10)
    assert (first["total"], first["total_exact"]) == (25, True)
    rest = daemon.client_call("search", query="saffron", limit=1000, offset=10)
    assert len(rest["hits"]) == 15 and rest["total"] == 25
    ids = [(h["root"], h["path"], h["seq"]) for h in first["hits"] + rest["hits"]]
    assert len(set(ids)) == 25, "pages do not overlap"
    assert "chunk_id" not in first["hits"][0], "ids from the shared sequence would leak other tenants' volume"
    scores = [h["score"] for h in first["hits"] + rest["hits"]]
    assert scores[0] == 100.0 and scores == sorted(scores, reverse=True) and scores[-1] > 0
    hit = next(h for h in rest["hits"] if h["path"] == "n05.md")
    assert (hit["line_start"], hit["line_end"], hit["match_line"]) == (1, 4, 4)
    assert [hit["snippet"][a:b] for a, b in hit["highlights"]] == ["saffron"]
    code = daemon.client_call("search", query="user x-ray C++")["hits"]
    assert [h["path"] for h in code] == ["code.py"] and code[0]["match_line"] == 2, "centred on the phrase x-ray"
    raw = daemon.client_call("search", query="NEAR(saffron line, 1) AND title", fts=True)
    assert raw["total"] == 25
    with pytest.raises(QueryError, match="bad FTS5 query"):
        daemon.client_call("search", query="saffron AND", fts=True)
    with pytest.raises(QueryError, match="nothing to search for"):
        daemon.client_call("search", query="-saffron")
    with pytest.raises(UsageError, match="limit must be between 1 and 1000"):
        daemon.client_call("search", query="saffron", limit=1001)
    with pytest.raises(UsageError, match="offset"):
        daemon.client_call("search", query="saffron", offset=-1)
    assert daemon.stop() == 0
