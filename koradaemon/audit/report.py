"""One-line, human-readable verification results for the CLI and the control socket."""

from __future__ import annotations

from .verify import VerifyResult


def format_verify_result(result: VerifyResult) -> str:
    """``OK agency=a records=N head=S`` or ``FAIL agency=a first_bad_seq=N reason=...``."""
    if result.ok:
        line = f"OK agency={result.agency_id} records={result.count} head={result.head_seq}"
        if result.torn_bytes:
            line += f" torn_tail_bytes={result.torn_bytes} (recovered at next start)"
        return line
    where = f" segment={result.bad_segment} offset={result.bad_offset}" if result.bad_segment is not None else ""
    return f"FAIL agency={result.agency_id} first_bad_seq={result.first_bad_seq}{where} reason={result.reason}"
