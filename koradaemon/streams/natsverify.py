"""The fleet verifier: re-verify an agency's chain from the stream, and check the local log
against the stream's last signed checkpoint (rollback, truncation, fork)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from ..audit.record import record_hash
from ..audit.segments import list_segments, segment_path
from ..audit.verify import verify_log
from ..errors import AuthError, KoraError, TamperError
from .natsauth import NatsAuth, NatsRefused, connect
from .natsnames import check_checkpoint, load_json, stream_name, subject

GENESIS_PREV = "0" * 64


class NatsUnavailable(KoraError):
    exit_code = 69
    code = "unavailable"


@dataclass
class ChainReport:
    agency_id: str
    ok: bool
    count: int
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _quiet(exc: Exception) -> None:
    """nats-py prints every connection error with a traceback unless told otherwise."""


async def _fetch_all(url: str, host: str, agency: str, kind: str, auth: NatsAuth | None) -> list[bytes]:
    try:
        nc = await connect(url, auth, timeout=10, connect_timeout=5, allow_reconnect=False,
                           max_reconnect_attempts=1, error_cb=_quiet)
    except NatsRefused as exc:
        raise AuthError(str(exc), hint="--token-file, --nkey-file or --creds-file") from None
    except (NatsError, OSError, TimeoutError) as exc:
        raise NatsUnavailable(f"cannot reach NATS at {url}: {exc!r}") from None
    try:
        js = nc.jetstream()
        out: list[bytes] = []
        seq = 1
        while True:
            try:
                msg = await js.get_msg(stream_name(host, agency), seq=seq, subject=subject(host, agency, kind),
                                       next=True)
            except NotFoundError:
                break
            out.append(msg.data or b"")
            seq = int(msg.seq or 0) + 1
        return out
    finally:
        await nc.close()


def fetch(url: str, host: str, agency: str, kind: str, auth: NatsAuth | str | None = None) -> list[bytes]:
    """Every message of ``kora.<host>.<agency>.<kind>``, in stream order (``auth``: a token or the
    credentials to show the server)."""
    if isinstance(auth, str):
        auth = NatsAuth(token=auth)
    return asyncio.run(_fetch_all(url, host, agency, kind, auth))


def verify_chain(agency: str, lines: list[bytes]) -> ChainReport:
    """Each record's hash recomputed, each ``prev`` linked, seqs 0, 1, 2, ... with no gap or repeat."""
    prev, expected = GENESIS_PREV, 0
    for raw in lines:
        try:
            rec = load_json(raw)
            seq, digest = rec["seq"], rec["hash"]
        except (ValueError, KeyError):
            return ChainReport(agency, False, expected, first_bad_seq=expected, reason="not a KBL-1 record")
        if seq != expected:
            kind = "duplicate" if isinstance(seq, int) and seq < expected else "gap"
            return ChainReport(agency, False, expected, first_bad_seq=expected,
                               reason=f"{kind}: expected seq {expected}, found {seq}")
        if rec.get("agency_id") != agency:
            return ChainReport(agency, False, expected, first_bad_seq=seq, reason="record of another agency")
        if rec.get("prev") != prev:
            return ChainReport(agency, False, expected, first_bad_seq=seq, reason="prev does not link")
        if record_hash(rec) != digest:
            return ChainReport(agency, False, expected, first_bad_seq=seq, reason="hash mismatch")
        prev, expected = digest, expected + 1
    if expected == 0:
        return ChainReport(agency, False, 0, reason="the stream holds no audit record of this agency")
    return ChainReport(agency, True, expected, head_seq=expected - 1, head_hash=prev)


def last_checkpoint(url: str, host: str, agency: str, auth: NatsAuth | str | None = None,
                    key: str | None = None) -> dict[str, Any]:
    """The stream's newest checkpoint, its signature checked against ``key`` (the public key, hex)
    when given, else against the key of the stream's first checkpoint."""
    docs = [load_json(raw) for raw in fetch(url, host, agency, "checkpoint", auth)]
    if not docs:
        raise TamperError(f"no checkpoint of agency {agency!r} on the stream", hint="is the export on?")
    try:
        pinned = key.lower() if key else str(check_checkpoint(docs[0])["key"])
        for doc in docs:
            check_checkpoint(doc, pinned)
    except ValueError as exc:
        raise TamperError(f"agency {agency!r}: {exc}") from None
    return docs[-1]


def _local_hashes(agency_dir: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for n in list_segments(agency_dir):
        with open(segment_path(agency_dir, n), "rb") as fh:
            for raw in fh:
                if raw.endswith(b"\n"):
                    rec = json.loads(raw)
                    out[int(rec["seq"])] = str(rec["hash"])
    return out


def against_checkpoint(agency_dir: Path, agency: str, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Compare the local log with a checkpoint; raises :class:`TamperError` naming what happened."""
    local = verify_log(agency_dir, agency)
    if not local.ok:
        raise TamperError(f"agency {agency!r}: the local log does not verify at seq {local.first_bad_seq}: "
                          f"{local.reason}")
    seq, digest = int(checkpoint["seq"]), str(checkpoint["hash"])
    head = local.head_seq if local.head_seq is not None else -1
    if head < seq:
        raise TamperError(f"agency {agency!r}: the local log was rolled back or truncated: its head is seq "
                          f"{head}, the signed checkpoint of {checkpoint.get('ts')} is at seq {seq}")
    mine = _local_hashes(agency_dir).get(seq)
    if mine != digest:
        raise TamperError(f"agency {agency!r}: the local log forked from the published chain at or before "
                          f"seq {seq}: local hash {mine}, checkpoint hash {digest}")
    return {"agency_id": agency, "ok": True, "local_head_seq": head, "checkpoint_seq": seq,
            "checkpoint_ts": checkpoint.get("ts")}
