"""docs/install.md section 6, step by step: restoring a backup, replacing a store PC.

Each test does what the document tells a store's IT person to do, with the
same commands as far as a test can run them: the agent is a real
``edge-agent run`` stopped with SIGTERM (what ``systemctl stop`` sends), the
backup is the real ``sqlite3`` CLI's ``.backup``, files are copied and
deleted as ``cp``/``rm`` do, and ``edge-agent drain``, ``edge-hub stores``,
``edge-hub identity`` and ``edge-hub publish stock`` are the installed
command-line programs. sudo, chown and systemctl have no stand-in: the test
runs as one user, which is also the agent's. The hub is the reference hub on
SQLite and on PostgreSQL, with its console. Each test ends with every sale
that got its 201 at the hub exactly once, and with what the document says
the operator sees. Keep the two in step: a change to the steps there is a
change here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.agent import AgentProcess, free_port
from support.storepcs import STORE, HubChain, health, sell, wait_for

SQLITE3 = Path("/usr/bin/sqlite3")
BIN = Path(sys.executable).parent  # the venv's bin: edge-agent and edge-hub as pip installed them
CONSOLE_TOKEN = "install-steps-console-token"

pytestmark = pytest.mark.skipif(
    not SQLITE3.exists(),
    reason="the backup step runs Debian's sqlite3 CLI: apt install sqlite3 (make test installs it as root)")


def run(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """A command as the operator types it; its output kept for the assertions."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if not k.startswith("EDGE_")})


def table_row(text: str, first: str) -> dict[str, str]:
    """The line of a fixed-width table (``edge-hub stores``) whose first cell is ``first``, by header."""
    lines = text.splitlines()
    header = lines[0]
    names = [n for n in header.split("  ") if n]
    starts = [header.index(n) for n in names]
    for line in lines[1:]:
        if line.split(" ", 1)[0] == first:
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
            return dict(zip(names, cells))
    raise AssertionError(f"no {first} line in:\n{text}")


class Chain(HubChain):
    """The reference hub (with its console) on one database, and the store's PCs."""

    def __init__(self, tmp_path: Path, broker: Any, db_url: str, make_agent: Callable[..., AgentProcess]):
        self.console = f"http://127.0.0.1:{free_port()}"
        # --session-expiry 0: what the store publishes while the hub is away is not queued for the hub at
        # the broker, so sales made then are on the store's disk only, as when the store's line is down.
        super().__init__(tmp_path, broker, db_url, make_agent,
                         hub_args=("--http", self.console.removeprefix("http://"), "--session-expiry", "0"),
                         hub_env={"EDGE_HUB_CONSOLE_TOKEN": CONSOLE_TOKEN})

    def edge_hub(self, *argv: str) -> str:
        """``edge-hub ... --db URL`` as the hub's operator runs it; its stdout."""
        done = run(str(BIN / "edge-hub"), *argv, "--db", self.db_url, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def alerts(self, rule: str) -> list[dict]:
        """The console's alerts of ``rule`` for the store, resolved ones too."""
        r = httpx.get(f"{self.console}/api/alerts", params={"store": STORE, "resolved": "true"},
                      headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        return [a for a in r.json() if a["rule"] == rule]


@pytest.fixture(params=["sqlite", "postgresql"])
def chain(request, tmp_path: Path, mosquitto, make_agent) -> Iterator[Chain]:
    url = f"sqlite:///{tmp_path / 'hub.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    c = Chain(tmp_path, mosquitto, url, make_agent)
    c.hub.start()
    yield c
    c.close()


def systemctl_stop(agent: AgentProcess) -> None:
    """``systemctl stop edge-agent``: SIGTERM, and the agent exits 0 (install.md section 5, Stopping)."""
    assert agent.stop(signal.SIGTERM, timeout=30) == 0, agent.log()


def drain(config: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """``edge-agent drain --config devices.yaml --data-dir DIR`` (the default --timeout)."""
    return run(str(BIN / "edge-agent"), "drain", "--config", str(config), "--data-dir", str(data_dir), timeout=700)


# The tests ---------------------------------------------------------------------

def test_restore_a_backup_after_a_day_of_sales(chain, tmp_path):
    pc = chain.agent("pc").start()
    morning = sell(pc, 20)
    wait_for("the morning at the hub", lambda: chain.drained(pc))

    # Section 6, "Backups": the nightly online backup, taken while the hub is away, so that it holds
    # events the hub acknowledges only later.
    #   sudo install -d -m 0750 -o edge-agent -g edge-agent /var/backups/edge-agent
    #   sudo -u edge-agent sqlite3 /var/lib/edge-agent/store.db ".backup /var/backups/edge-agent/store-$(date +%F).db"
    chain.hub.stop()
    evening = sell(pc, 10)
    backups = tmp_path / "var" / "backups" / "edge-agent"
    backups.mkdir(parents=True, mode=0o750)
    backup = backups / "store-2025-06-01.db"
    done = run(str(SQLITE3), str(pc.data_dir / "store.db"), f".backup {backup}", timeout=60)
    assert done.returncode == 0 and backup.is_file(), done.stderr
    chain.hub.start()

    # The next day: sales, the last of them while the hub is away again, then the upgrade fails.
    day = sell(pc, 30)
    wait_for("the day at the hub", lambda: chain.drained(pc))
    chain.hub.stop()
    unsent = sell(pc, 12)

    # "Restoring a backup", step 1: sudo systemctl stop edge-agent
    systemctl_stop(pc)
    chain.hub.start()
    assert not set(unsent) & set(chain.hub_sales()), "the last sales were to be on the store's disk only"

    # Step 2: the current store.db can be read: copy the data directory and drain the copy.
    #   sudo cp -a /var/lib/edge-agent /var/lib/edge-agent.before-restore
    #   sudo -u edge-agent .../edge-agent drain --config /etc/edge-agent/devices.yaml --data-dir /var/lib/edge-agent.before-restore
    before_restore = pc.workdir / "data.before-restore"
    shutil.copytree(pc.data_dir, before_restore, symlinks=True)  # cp -a
    done = drain(pc.config_path, before_restore)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(unsent)} event(s) to send" in done.stdout and "every event is at the hub" in done.stdout

    # Step 3: the backup in place of store.db, the WAL and shared memory gone, chown, start.
    #   sudo cp /var/backups/edge-agent/store-2025-06-01.db /var/lib/edge-agent/store.db
    #   sudo rm -f /var/lib/edge-agent/store.db-wal /var/lib/edge-agent/store.db-shm
    #   sudo chown edge-agent:edge-agent /var/lib/edge-agent/store.db    (the test's user is the agent's)
    #   sudo systemctl start edge-agent
    db = pc.data_dir / "store.db"
    shutil.copyfile(backup, db)
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        extra.unlink(missing_ok=True)
    assert db.stat().st_uid == os.getuid()
    pc.start()
    after = sell(pc, 15)

    # Every sale that got its 201 is at the hub once: the ones only the old store.db held came by the drain.
    chain.assert_exactly_once(morning + evening + day + unsent + after, pc)

    # "What happens then": the backup held events the hub had not acknowledged; the agent sent them
    # again, and its journal says what the ack told it.
    assert "the database was restored from a backup or copied" in pc.log()
    # edge-hub identity STORE: the restore, OPEN, with what the store's counts lack.
    text = chain.edge_hub("identity", STORE)
    line = next((ln for ln in text.splitlines() if "database_restored" in ln), "")
    assert line.strip().startswith("[OPEN] database_restored"), text
    assert "The store's database was restored from a backup or copied" in text
    assert "so its stock counts and points lack them. No event is lost." in text
    assert "conflicts: 0 events kept aside" in text
    # edge-hub stores: a second stream, no conflict, the identity issue counted.
    row = table_row(chain.edge_hub("stores"), STORE)
    assert (row["STREAMS"], row["CONFLICTS"], row["IDENTITY"]) == ("2", "0", "1 open"), row

    # The console raises database-restored (warning).
    alert = wait_for("the console's database-restored alert", lambda: chain.alerts("database-restored"), 60)[0]
    assert alert["severity"] == "warning" and alert["state"] == "open", alert

    # Put the counts right from the hub: edge-hub publish stock --store STORE --sku ... --qty ...
    done = run(str(BIN / "edge-hub"), "publish", "stock", "--broker", chain.broker.url, "--store", STORE,
               "--sku", "TOTE-CANVAS", "--qty", "42", timeout=60)
    assert done.returncode == 0, done.stderr

    def counted() -> bool:
        with pc.client("kiosk") as c:
            return c.get("/v1/products/TOTE01").json()["stock_store"] == 42
    wait_for("the hub's stock count at the store", counted, 60)

    # Then resolve the alert on the console: it stays resolved, and the hub closes its record.
    r = httpx.post(f"{chain.console}/api/alerts/{alert['id']}/resolve",
                   headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [a["state"] for a in chain.alerts("database-restored")] == ["resolved"]
    text = chain.edge_hub("identity", STORE)
    assert "[OPEN]" not in text and "[cleared " in text and "database_restored" in text, text
    assert "open" not in chain.edge_hub("stores")  # IDENTITY back to ok


def test_replace_the_pc_and_drain_the_old_disk(chain, tmp_path):
    old = chain.agent("old-pc").start()
    sent = sell(old, 10)
    wait_for("the first sales at the hub", lambda: chain.drained(old))
    chain.hub.stop()  # the hub is away when the PC dies: its last sales are only on its disk
    stranded = sell(old, 15)
    old.kill()
    chain.hub.start()

    # "Replacing a store PC", steps 1 and 2: the new PC installed with the old one's devices.yaml and
    # secrets (the same config here, on an empty disk), the old one off, then
    #   sudo systemctl enable --now edge-agent
    new = chain.make_agent(workdir=tmp_path / "new-pc", config=old.config)
    new.import_catalog()
    new.start()
    after = sell(new, 10)
    wait_for("the new PC's sales at the hub", lambda: chain.drained(new))
    assert health(new)["status"] == "ok"

    # Step 3: the old disk, mounted on the new PC, drained beside the running agent.
    #   sudo mkdir -p /mnt/old && sudo mount /dev/sdb2 /mnt/old
    #   sudo .../edge-agent drain --config /etc/edge-agent/devices.yaml --data-dir /mnt/old/var/lib/edge-agent
    # The mount is a symlink to the old PC's data directory: the files are the old disk's own.
    mounted = tmp_path / "mnt" / "old" / "var" / "lib" / "edge-agent"
    mounted.parent.mkdir(parents=True)
    mounted.symlink_to(old.data_dir, target_is_directory=True)
    assert not set(stranded) & set(chain.hub_sales()), "the old PC's last sales were to be on its disk only"
    done = drain(new.config_path, mounted)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(stranded)} event(s) to send to {chain.broker.url} as store {STORE}" in done.stdout
    assert "every event is at the hub" in done.stdout

    chain.assert_exactly_once(sent + stranded + after, new)
    # The live agent was not disturbed.
    assert health(new)["status"] == "ok"

    # What the hub shows: a second stream, nothing to alert about.
    row = table_row(chain.edge_hub("stores"), STORE)
    assert (row["STREAMS"], row["CONFLICTS"], row["IDENTITY"]) == ("2", "0", "ok"), row
    text = chain.edge_hub("identity", STORE)
    assert "identity: nothing noticed" in text and "conflicts: 0 events kept aside" in text

    # Draining it again sends nothing: the old disk knows what the hub acknowledged.
    again = drain(new.config_path, mounted)
    assert again.returncode == 0 and "nothing to send, the hub has every event of this database" in again.stdout
