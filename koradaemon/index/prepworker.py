"""The prep worker process: reads, hashes, chunks and derives files for bulk work, off the daemon's GIL.

Run as ``python -m koradaemon.index.prepworker`` by :mod:`.prepclient`; it imports only what
preparing needs (no SQLite, no structlog). Frames on stdin and stdout: a 4-byte big-endian
length, then :mod:`marshal` data. A request is a list of items ``(root_path, rel, known, bulk,
chunk_bytes, overlap_percent, max_file_bytes)`` (``known``: the indexed row's fields or None);
the answer is one result per item, in order (see :func:`encode`). Each item runs the very code
the daemon runs in its own threads (:func:`~.prepare.prepare_index`), so the rows are the same.
An item that fails here is answered ``("R", reason)``: the daemon does it itself. The process
ends at end of input (the daemon closed the pipe, or is gone); a frame it cannot read ends it with
one line on stderr and status 65. SIGINT is ignored: the daemon ends it.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import sys
from typing import BinaryIO

from .chunking import ChunkParams
from .jobs import DeleteJob, IndexJob, Job, TouchJob
from .prepare import prepare_index
from .rows import DocRow

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30

# One result per item: None (nothing to do), ("I", size, mtime_ns, sha256, chunks, skipped, nbytes),
# ("T", size, mtime_ns), ("D",), or ("R", reason): prepare it in the daemon instead.
Result = tuple[object, ...] | None


def encode(job: Job | None) -> Result:
    if job is None:
        return None
    if isinstance(job, IndexJob):
        if not isinstance(job.chunks, list | tuple):
            return ("R", "streamed")  # a big file's lazy rows are read by the writer, not sent
        return ("I", job.size, job.mtime_ns, job.sha256, [tuple(c) for c in job.chunks], job.skipped, job.nbytes)
    if isinstance(job, TouchJob):
        return ("T", job.size, job.mtime_ns)
    if isinstance(job, DeleteJob):
        return ("D",)
    return ("R", type(job).__name__)


def prepare_item(item: tuple[object, ...]) -> Result:
    try:
        root_path, rel, known, bulk, chunk_bytes, overlap, max_bytes = item
        if not (isinstance(root_path, str) and isinstance(rel, str) and isinstance(chunk_bytes, int)
                and isinstance(overlap, int) and isinstance(max_bytes, int)):
            return ("R", "bad_item")
        row = DocRow(*known) if isinstance(known, tuple) else None
        params = ChunkParams(chunk_bytes, overlap, max_bytes)
        return encode(prepare_index("", "", rel, os.path.join(root_path, rel), row, params, bool(bulk),
                                    root_path=root_path))
    except Exception as exc:  # the daemon prepares it itself and meets the same trouble there
        return ("R", f"error:{type(exc).__name__}")


def read_frame(src: BinaryIO) -> bytes | None:
    """One frame's data; None at end of input. ValueError: a broken frame."""
    head = src.read(HEADER.size)
    if not head:
        return None
    if len(head) != HEADER.size:
        raise ValueError("truncated frame header")
    (n,) = HEADER.unpack(head)
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes is too big")
    data = src.read(n)
    if len(data) != n:
        raise ValueError("truncated frame")
    return data


def write_frame(dst: BinaryIO, payload: list[Result]) -> None:
    data = marshal.dumps(payload)
    dst.write(HEADER.pack(len(data)))
    dst.write(data)
    dst.flush()


def serve(src: BinaryIO, dst: BinaryIO) -> None:
    while (data := read_frame(src)) is not None:
        items = marshal.loads(data)
        if not isinstance(items, list):
            raise ValueError("a request must be a list of items")
        write_frame(dst, [prepare_item(it) if isinstance(it, tuple) else ("R", "bad_item") for it in items])


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the daemon's terminal is the daemon's to handle
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the daemon went away
        return 0
    except (ValueError, EOFError, TypeError) as exc:
        print(f"koradaemon prep worker: bad request: {exc}", file=sys.stderr)
        return 65
    return 0


if __name__ == "__main__":
    sys.exit(main())
