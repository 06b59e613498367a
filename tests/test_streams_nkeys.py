"""NATS nkey and .creds authentication without the nkeys package: the encoding against published
values, and a real nats-server with an nkey user and with an operator/account/user JWT setup."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_for
from natsutil import NatsServer

from koradaemon.audit.manager import AuditManager
from koradaemon.errors import AuthError, ConfigError
from koradaemon.events import EventBus
from koradaemon.index.db import open_db
from koradaemon.streams.audittail import Head
from koradaemon.streams.nats_export import NatsExporter
from koradaemon.streams.natsauth import NatsAuth
from koradaemon.streams.natskeys import (
    PREFIX_ACCOUNT,
    PREFIX_OPERATOR,
    KeyPair,
    NkeyError,
    crc16_xmodem,
    format_creds,
    mint_jwt,
    parse_creds,
)
from koradaemon.streams.natsverify import fetch

# The user key pair of the NATS documentation's nkey examples (seed and public key as published).
DOC_SEED = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
DOC_PUBLIC = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
HOST = "nkhost"


def test_crc16_xmodem_check_value_and_the_documented_key_pair() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3  # the CRC-16/XMODEM catalogue's check value
    kp = KeyPair.from_seed(DOC_SEED)
    assert kp.public_key == DOC_PUBLIC
    assert kp.seed == DOC_SEED


def test_generated_seeds_round_trip_and_bad_ones_are_refused_without_showing_them() -> None:
    for prefix, first in ((PREFIX_OPERATOR, "O"), (PREFIX_ACCOUNT, "A")):
        kp = KeyPair.generate(prefix)
        assert kp.public_key[0] == first and kp.seed[:2] == "S" + first
        assert KeyPair.from_seed(kp.seed).public_key == kp.public_key
    user = KeyPair.generate()
    flipped = user.seed[:10] + ("A" if user.seed[10] != "A" else "B") + user.seed[11:]
    for bad in (flipped, DOC_PUBLIC, "not base32 at all!", user.seed[:-4]):
        with pytest.raises(NkeyError) as err:
            KeyPair.from_seed(bad)
        assert user.seed not in str(err.value) and DOC_SEED not in str(err.value)
    with pytest.raises(NkeyError, match="user"):
        NatsAuth.from_secret("nkey", KeyPair.generate(PREFIX_ACCOUNT).seed)
    assert user.seed not in repr(NatsAuth.from_secret("nkey", user.seed))


def test_creds_file_parsed_and_a_broken_one_refused() -> None:
    account, user = KeyPair.generate(PREFIX_ACCOUNT), KeyPair.from_seed(DOC_SEED)
    jwt = mint_jwt(account, DOC_PUBLIC, "user", "u", 1_700_000_000)
    creds = parse_creds("# comment\n" + format_creds(jwt, DOC_SEED))
    assert creds.jwt == jwt and creds.key.public_key == DOC_PUBLIC
    assert DOC_SEED not in repr(creds) and user.public_key in repr(creds)
    with pytest.raises(NkeyError, match="SEED"):
        parse_creds(format_creds(jwt, DOC_SEED).split("\n\n")[0])
    with pytest.raises(NkeyError, match="JWT"):
        parse_creds(format_creds("not-a-jwt", DOC_SEED))
    with pytest.raises(NkeyError, match=f"not the key of the JWT's user {DOC_PUBLIC}") as err:
        parse_creds(format_creds(jwt, KeyPair.generate().seed))
    assert DOC_SEED not in str(err.value)


class Rig:
    def __init__(self, root: Path, url: str, auth: NatsAuth | None) -> None:
        root.mkdir(parents=True)
        open_db(root / "k.db").close()
        self.audit = AuditManager(audit_root=root / "audit", db_path=root / "k.db", agency_ids=["alpha"])
        self.audit.open_all()
        self.exporter = NatsExporter(EventBus(), url=url, host=HOST, agencies=["alpha"], audit_root=root / "audit",
                                     heads=self.head, spool_dir=root / "spool", auth=auth, ack_timeout=1.0)

    def head(self, agency: str) -> Head | None:
        h = self.audit.heads()[agency]
        return None if h is None else Head(h["seq"], h["segment"], h["offset"])

    def __enter__(self) -> Rig:
        self.exporter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.exporter.stop(time.monotonic() + 10)
        self.audit.close()


@pytest.fixture
def nkey_server(tmp_path: Path) -> Iterator[tuple[NatsServer, KeyPair]]:
    user = KeyPair.generate()
    conf = tmp_path / "nkey.conf"
    conf.write_text(f"authorization {{ users = [ {{ nkey: {user.public_key} }} ] }}\n")
    server = NatsServer(tmp_path / "store", extra=("-c", str(conf))).start()
    try:
        yield server, user
    finally:
        server.stop()


def test_nkey_seed_exports_and_a_wrong_seed_is_refused_in_one_line(tmp_path: Path,
                                                                    nkey_server: tuple[NatsServer, KeyPair]) -> None:
    server, user = nkey_server
    good = NatsAuth.from_secret("nkey", user.seed)
    with Rig(tmp_path / "good", server.url, good) as rig:
        rig.audit.append_many("alpha", [("index", {"path": f"n{i}.md"}) for i in range(3)])
        def seqs() -> list[int]:
            return [json.loads(m)["seq"] for m in fetch(server.url, HOST, "alpha", "audit", good)]

        wait_for(lambda: len(seqs()) >= 4, 30, 0.05, "records exported with the nkey")
        assert seqs() == [0, 1, 2, 3]  # the log's opening record and the three appended
    wrong = KeyPair.generate()
    with Rig(tmp_path / "wrong", server.url, NatsAuth(key=wrong)) as rig:
        stats = rig.exporter.stats
        wait_for(lambda: stats.refused, 10, 0.02, "the wrong seed refused")
        line = stats.last_error or ""
        assert line == (f"NATS at {server.url} refused the credentials (nkey {wrong.public_key}): "
                        "Authorization Violation")
        assert wrong.seed not in line and not stats.connected
    with pytest.raises(AuthError, match="refused the credentials") as err:
        fetch(server.url, HOST, "alpha", "audit", NatsAuth(key=wrong))
    assert err.value.exit_code == 77
    with pytest.raises(AuthError):
        fetch(server.url, HOST, "alpha", "audit")  # no credentials at all


def operator_setup(tmp_path: Path) -> tuple[NatsServer, KeyPair, KeyPair, str]:
    """An operator, a system account and an account with JetStream, all signed here (as nsc would)."""
    op, sys_acc, acc = KeyPair.generate(PREFIX_OPERATOR), KeyPair.generate(PREFIX_ACCOUNT), \
        KeyPair.generate(PREFIX_ACCOUNT)
    now = int(time.time())
    unlimited = {k: -1 for k in ("subs", "data", "payload", "imports", "exports", "conn", "leaf",
                                 "mem_storage", "disk_storage", "streams", "consumer")}
    accounts = {sys_acc.public_key: mint_jwt(op, sys_acc.public_key, "account", "SYS", now),
                acc.public_key: mint_jwt(op, acc.public_key, "account", "kora", now,
                                         nats={"limits": {**unlimited, "wildcards": True}})}
    preload = ", ".join(f'{k}: "{v}"' for k, v in accounts.items())
    conf = tmp_path / "operator.conf"
    conf.write_text(f'operator: "{mint_jwt(op, op.public_key, "operator", "kora-op", now)}"\n'
                    f"system_account: {sys_acc.public_key}\nresolver: MEMORY\nresolver_preload: {{ {preload} }}\n")
    server = NatsServer(tmp_path / "store", extra=("-c", str(conf))).start()
    user = KeyPair.generate()
    user_jwt = mint_jwt(acc, user.public_key, "user", "daemon", now,
                        nats={"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    return server, acc, user, format_creds(user_jwt, user.seed)


def test_creds_file_with_a_user_jwt_exports_and_a_wrong_seed_is_refused(tmp_path: Path) -> None:
    server, _acc, user, creds = operator_setup(tmp_path)
    try:
        auth = NatsAuth.from_secret("creds", creds)
        with Rig(tmp_path / "good", server.url, auth) as rig:
            rig.audit.append_many("alpha", [("index", {"path": "c.md"})])
            wait_for(lambda: fetch(server.url, HOST, "alpha", "audit", auth), 30, 0.05, "records exported")
        # a user JWT signed by an account the server does not trust
        stranger, other = KeyPair.generate(PREFIX_ACCOUNT), KeyPair.generate()
        forged = NatsAuth.from_secret("creds", format_creds(
            mint_jwt(stranger, other.public_key, "user", "intruder", int(time.time())), other.seed))
        with pytest.raises(AuthError, match=f"user JWT of {other.public_key}.*Authorization Violation"):
            fetch(server.url, HOST, "alpha", "audit", forged)
        assert user.public_key in auth.describe()
    finally:
        server.stop()


def nkey_daemon(tmp_path: Path, url: str, seed: str) -> DaemonProc:
    """A started daemon exporting to ``url`` with the nkey ``seed`` kept in its secrets vault
    (set through the CLI, as a user would)."""
    d = DaemonProc(tmp_path / "root", extra=f"""nats:
  enabled: true
  url: {url}
  host_id: t1
  nkey_seed_secret: alpha/nats-nkey
""")
    set_cmd = [*d.cli_cmd(), "secret", "set", "--agency", "alpha", "nats-nkey"]
    assert subprocess.run(set_cmd, input=seed.encode() + b"\n", env=d.env, timeout=120).returncode == 0
    return d.start()


def test_daemon_reads_the_nkey_seed_from_the_vault_and_the_verifier_takes_a_seed_file(
        tmp_path: Path, nkey_server: tuple[NatsServer, KeyPair]) -> None:
    server, user = nkey_server
    d = nkey_daemon(tmp_path, server.url, user.seed)
    try:
        (d.root / "alpha" / "notes" / "k.md").write_text("nkey auth\n")
        good = NatsAuth(key=user)
        wait_for(lambda: len(fetch(server.url, "t1", "alpha", "audit", good)) >= 2, 60, 0.1, "records exported")
        assert json.loads(d.cli("status", "--json").stdout)["streams"] == {"nats": "connected"}
        (tmp_path / "user.nk").write_text(user.seed + "\n")
        (tmp_path / "other.nk").write_text(KeyPair.generate().seed + "\n")
        ok = d.cli("audit", "verify", "--from-nats", server.url, "--host", "t1", "--agency", "alpha",
                   "--nkey-file", str(tmp_path / "user.nk"))
        assert ok.returncode == 0 and "agency alpha: ok" in ok.stdout, ok.stderr
        bad = d.cli("audit", "verify", "--from-nats", server.url, "--host", "t1", "--agency", "alpha",
                    "--nkey-file", str(tmp_path / "other.nk"))
        assert bad.returncode == 77 and "refused the credentials" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
        assert user.seed.encode() not in d.log.read_bytes()
    finally:
        assert d.stop() == 0


def test_config_takes_one_credential_and_a_bad_seed_in_the_vault_is_a_config_error(tmp_path: Path) -> None:
    from koradaemon.config_model import NatsConfig
    from koradaemon.streams.build import _nats_auth
    from koradaemon.vault.keys import MIN_ITERATIONS, KeyHolder
    from koradaemon.vault.secrets import SecretStore

    (tmp_path / "pass").write_bytes(b"correct horse battery staple")
    (tmp_path / "pass").chmod(0o600)
    store = SecretStore(tmp_path / "sv", KeyHolder(tmp_path / "pass", idle_lock_s=60, iterations=MIN_ITERATIONS))
    seed = KeyPair.generate().seed
    store.set("alpha", "nk", seed.encode())
    store.set("alpha", "broken", b"SUNOTASEED")
    auth = _nats_auth(NatsConfig(enabled=True, nkey_seed_secret="alpha/nk"), store)
    assert auth is not None and auth.key is not None and auth.key.seed == seed
    with pytest.raises(ConfigError, match="not several"):
        _nats_auth(NatsConfig(enabled=True, token_secret="alpha/t", nkey_seed_secret="alpha/nk"), store)
    with pytest.raises(ConfigError, match="nkey_seed_secret") as err:
        _nats_auth(NatsConfig(enabled=True, nkey_seed_secret="alpha/broken"), store)
    assert "SUNOTASEED" not in str(err.value)
    assert sys.modules.get("nkeys") is None  # nothing here imported the nkeys package


def test_status_says_when_the_nats_server_refuses_the_daemons_credentials(
        tmp_path: Path, nkey_server: tuple[NatsServer, KeyPair]) -> None:
    server, _user = nkey_server
    wrong = KeyPair.generate()  # a valid seed the server does not know
    d = nkey_daemon(tmp_path, server.url, wrong.seed)
    try:
        wait_for(lambda: json.loads(d.cli("status", "--json").stdout)["streams"].get("nats") == "refused",
                 30, 0.1, "status shows the refusal")
        human = d.cli("status")
        assert "nats: the server refused the credentials" in human.stdout, human.stdout
        assert wrong.seed.encode() not in d.log.read_bytes()
    finally:
        assert d.stop() == 0
