"""The configuration as frozen dataclasses. Parsing lives in :mod:`koradaemon.config`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def rel(default: str) -> Any:
    """A field holding a path relative to the data root."""
    return field(default=default, metadata={"path": True})


def num(default: float, lo: float, hi: float) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True)
class LogConfig:
    level: str = field(default="info", metadata={"choices": ("debug", "info", "warning", "error")})
    format: str = field(default="auto", metadata={"choices": ("auto", "json", "console")})
    file: str = rel("logs/koradaemon.log")
    rotate_mb: float = num(64, 0.01, 1 << 20)  # start a new file past this size
    keep_days: float = num(14, 0, 3650)  # delete rotated files older than this (0: keep none)


@dataclass(frozen=True)
class IndexConfig:
    database: str = rel("kora_kernel.db")
    workers: int = num(1, 1, 64)
    max_file_bytes: int = num(256 * MiB, 1, 1 << 40)
    chunk_bytes: int = num(51_200, 1024, 16 * MiB)
    overlap_percent: int = num(10, 0, 50)
    bulk_batch_files: int = num(2000, 1, 1_000_000)
    bulk_batch_bytes: int = num(64 * MiB, 1, 1 << 34)
    optimize_idle_s: float = num(30, 1, 86_400)
    search_time_limit_ms: int = num(1000, 10, 60_000)
    prep_process: bool = True  # bulk files prepared in a worker process (index/prepclient.py)


@dataclass(frozen=True)
class WatchConfig:
    debounce_ms: int = num(50, 0, 100)
    queue_max: int = num(100_000, 10, 10_000_000)
    poll_interval_ms: int = num(2000, 100, 3_600_000)


@dataclass(frozen=True)
class AuditConfig:
    dir: str = rel("audit")
    segment_max_bytes: int = num(64 * MiB, 4096, 1 << 34)
    group_commit_ms: int = num(10, 0, 1000)
    group_commit_records: int = num(256, 1, 100_000)
    full_verify_on_start: bool = True


@dataclass(frozen=True)
class VaultConfig:
    enabled: bool = True
    passphrase_file: str = "secrets/vault-passphrase"
    kdf_iterations: int = num(600_000, 600_000, 10_000_000)
    idle_lock_s: float = num(900, 1, 86_400 * 7)
    dir: str = rel("snapshots")
    keep_last: int = num(10, 1, 100_000)
    auto_interval_s: float = num(3600, 0, 86_400 * 30)
    milestone_settle_s: float = num(30, 0, 86_400)
    # left out of snapshots (caches, locks); see koradaemon/vault/consistent.py for the syntax
    exclude: tuple[str, ...] = ("*.lock", "*.lck", "*.pid", "*.sock", "*.tmp", "*.swp", "cache/", ".cache/",
                                "caches/", "Cache/", "GPUCache/", "Code Cache/", "tmp/", "node_modules/")


@dataclass(frozen=True)
class ControlConfig:
    socket: str = rel("run/koradaemon.sock")
    tokens_dir: str = rel("run/tokens")
    max_request_bytes: int = num(1 * MiB, 1024, 64 * MiB)
    backlog: int = num(64, 1, 4096)  # listen() backlog; clients wait there (with a timeout) when it is full
    preauth_slots: int = num(16, 1, 1024)  # connections not yet authenticated, shared by everyone
    agency_slots: int = num(16, 1, 1024)  # authenticated connections per agency
    operator_slots: int = num(4, 0, 256)  # reserve for root / the daemon's user when an agency is full
    auth_timeout_s: float = num(10, 0.1, 3600)  # connect -> first request with a valid token
    idle_timeout_s: float = num(300, 1, 86400)  # between requests of an authenticated connection
    read_timeout_s: float = num(10, 0.1, 3600)  # first byte of a request -> its newline
    heavy_per_agency: int = num(2, 1, 256)  # searches, snapshots, verifies running at once per agency
    heavy_wait_s: float = num(30, 0, 3600)  # how long a heavy request waits for its turn before "busy"


@dataclass(frozen=True)
class AgentConfig:
    enabled: bool = False
    agency_id: str = ""
    command: tuple[str, ...] = ("openclaw", "gateway", "run", "--bind", "loopback")
    workdir: str = rel("agent")
    state_dir: str = rel("agent/state")
    health_url: str = "http://127.0.0.1:18789"
    probe_interval_s: float = num(5, 0.01, 3600)
    probe_timeout_s: float = num(2, 0.01, 600)
    hung_after_failures: int = num(3, 1, 100)
    startup_timeout_s: float = num(60, 0.1, 3600)
    drain_s: float = num(10, 0, 3600)
    backoff_initial_s: float = num(1, 0.01, 3600)
    backoff_max_s: float = num(120, 0.01, 86_400)
    healthy_reset_s: float = num(600, 0.1, 86_400)
    crash_loop_failures: int = num(5, 1, 1000)
    crash_loop_window_s: float = num(600, 1, 86_400)
    degraded_retry_s: float = num(300, 0.1, 86_400)
    openclaw: bool = True  # the agent is an OpenClaw gateway: seed its config, register the MCP server
    good_after_s: float = num(60, 0, 86_400)  # ready this long, no crash since: snapshots count as known-good
    user: str = ""  # run the agent under this account (the daemon then needs root or CAP_SETUID/SETGID/CHOWN)
    group: str = ""  # default: the user's primary group
    home: str = rel("agent/home")  # the agent's HOME, owned by it
    env: dict[str, str] = field(default_factory=dict, metadata={"env": True})  # plain extra variables
    # ENV_NAME=secret-name: the secret (secrets vault, the agent's agency) decrypted into the agent's
    # environment at each spawn; never on disk in clear, never logged.
    secret_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class VectorsConfig:
    """Local embeddings beside the full-text index (issue 15); off by default, and then nothing is loaded."""

    enabled: bool = False
    database: str = rel("kora_vectors.db")
    dims: int = num(256, 64, 256)  # 64, 128 or 256: the model's leading (Matryoshka) dimensions; 256 = all
    passage_bytes: int = num(1536, 256, 16_384)
    batch_passages: int = num(256, 8, 8192)
    poll_s: float = num(0.5, 0.01, 60)



@dataclass(frozen=True)
class WebSocketConfig:
    """The live event stream over WebSocket (docs/streams.md); off by default, loopback by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = num(8765, 0, 65535)  # 0: any free port (the bound one is written to run/websocket.port)
    tls_cert: str = ""  # PEM files relative to the data root; both set = wss://
    tls_key: str = ""
    tokens_dir: str = rel("run/ws-tokens")  # one 0600 token file per client, created at start
    # "name:role:agency[,agency...]" with role viewer | auditor | admin ("name:admin" sees every agency)
    clients: tuple[str, ...] = ()
    buffer_events: int = num(1000, 1, 1_000_000)  # per connection; a consumer that falls behind is dropped
    max_clients: int = num(256, 1, 100_000)


@dataclass(frozen=True)
class NatsConfig:
    """Export of events, audit records and signed checkpoints to NATS JetStream (docs/nats.md)."""

    enabled: bool = False
    url: str = "nats://127.0.0.1:4222"
    host_id: str = ""  # the <host> of the subjects; default: this machine's short host name
    # credentials, at most one: "agency/name" of a secret holding a token, an nkey user seed or a .creds file
    token_secret: str = ""
    nkey_seed_secret: str = ""
    creds_secret: str = ""
    signing_key_secret: str = ""  # "agency/name" of the Ed25519 checkpoint key (created if absent); empty: none
    spool_dir: str = rel("nats-spool")
    checkpoint_every: int = num(1000, 1, 10_000_000)
    checkpoint_interval_s: float = num(60, 1, 86_400)


@dataclass(frozen=True)
class AgencyConfig:
    agency_id: str
    roots: tuple[str, ...] = field(default=(), metadata={"path": True})
    ignore: tuple[str, ...] = ()
    state_dirs: tuple[str, ...] = field(default=(), metadata={"path": True})


@dataclass(frozen=True)
class Config:
    data_root: Path
    source: Path | None
    agencies: tuple[AgencyConfig, ...]
    version: int = 1
    shutdown_timeout_s: float = 30.0
    log: LogConfig = LogConfig()
    index: IndexConfig = IndexConfig()
    watch: WatchConfig = WatchConfig()
    audit: AuditConfig = AuditConfig()
    vault: VaultConfig = VaultConfig()
    control: ControlConfig = ControlConfig()
    agent: AgentConfig = AgentConfig()
    vectors: VectorsConfig = VectorsConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    nats: NatsConfig = NatsConfig()
    # Non-fatal findings of validation (e.g. a root that does not exist yet), one line each.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def path(self, rel_path: str) -> Path:
        """A config path made absolute against the data root."""
        return self.data_root / rel_path

    def socket_path(self) -> Path:
        """The control socket: in $KORA_RUNTIME_DIR or systemd's $RUNTIME_DIRECTORY when set, else from config."""
        runtime = _runtime_dir()
        return runtime / "koradaemon.sock" if runtime else self.path(self.control.socket)

    def tokens_path(self) -> Path:
        runtime = _runtime_dir()
        return runtime / "tokens" if runtime else self.path(self.control.tokens_dir)

    def agency(self, agency_id: str) -> AgencyConfig | None:
        return next((a for a in self.agencies if a.agency_id == agency_id), None)


def _runtime_dir() -> Path | None:
    value = os.environ.get("KORA_RUNTIME_DIR") or os.environ.get("RUNTIME_DIRECTORY")
    return Path(value.split(":")[0]) if value else None
