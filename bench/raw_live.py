"""The floor for close → searchable: raw inotify → read → sha256 → one FTS5 transaction per file.

Run by bench_live.py as a subprocess: ``raw_live.py WATCH_DIR DB``. One thread, no debounce, no
queues, no audit: inotify (IN_CLOSE_WRITE on one directory) read with ``os.read``, the file read
whole, and ``documents`` + ``chunks_fts`` rows written in one transaction. Prints ``ready`` once
the watch is in place; stops on SIGTERM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import signal
import struct
import sys

import apsw

IN_CLOSE_WRITE = 0x00000008
HEADER = struct.Struct("iIII")


def main() -> None:
    watch_dir, db = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(watch_dir), IN_CLOSE_WRITE) < 0:
        raise SystemExit(f"inotify: {os.strerror(ctypes.get_errno())}")
    conn = apsw.Connection(db)
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "normal")
    conn.execute("CREATE TABLE IF NOT EXISTS documents(path TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, path UNINDEXED)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        buf = os.read(fd, 65536)
        pos = 0
        while pos < len(buf):
            _, _, _, name_len = HEADER.unpack_from(buf, pos)
            name = buf[pos + HEADER.size : pos + HEADER.size + name_len].rstrip(b"\0").decode()
            pos += HEADER.size + name_len
            data = open(os.path.join(watch_dir, name), "rb").read()  # noqa: SIM115
            with conn:
                conn.execute("DELETE FROM chunks_fts WHERE path = ?", (name,))
                conn.execute("INSERT INTO chunks_fts(body, path) VALUES (?, ?)", (data.decode(), name))
                conn.execute("INSERT OR REPLACE INTO documents(path, sha256) VALUES (?, ?)",
                             (name, hashlib.sha256(data).hexdigest()))


if __name__ == "__main__":
    main()
