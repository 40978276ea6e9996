"""A store's PCs and the chain's reference hub, for the tests of a store's identity.

``HubChain`` runs ``edge-hub run`` on one database (SQLite or PostgreSQL)
and makes store PCs for one store id: each a real ``edge-agent run`` with
its own data directory (its disk) and API port and the store's devices.yaml
otherwise. ``assert_exactly_once`` is CONTRACT section 5 with streams: every
sale that got its 201 at the hub exactly once over all the store's streams,
each stream gapless, no open gap, no conflicting event, every outbox empty.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.agent import AgentProcess, config_dict, free_port
from support.hubprocess import HubProcess
from sync.hub.db import HubDB, open_db

STORE = "store-test"


def sale_body() -> dict:
    return {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
            "payment": {"method": "cash"}}


def sell(agent: AgentProcess, n: int) -> list[str]:
    """``n`` sales, each answered 201; their client_sale_ids."""
    done = []
    with agent.client("kiosk", timeout=30) as c:
        for _ in range(n):
            body = sale_body()
            r = c.post("/v1/sales", json=body)
            assert r.status_code == 201, r.text
            done.append(body["client_sale_id"])
    return done


def health(agent: AgentProcess) -> dict:
    r = httpx.get(f"{agent.url}/v1/health", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)


class HubChain:
    """The reference hub on one database, and a factory of PCs for one store id."""

    def __init__(self, tmp_path: Path, broker: Any, db_url: str, make_agent: Callable[..., AgentProcess],
                 hub_args: tuple[str, ...] = (), hub_env: dict[str, str] | None = None):
        self.tmp_path, self.broker, self.db_url, self.make_agent = tmp_path, broker, db_url, make_agent
        self.hub = HubProcess(broker.url, db_url, tmp_path / "hub.log", client_id="hub-1", env=hub_env)
        self.hub.args += list(hub_args)
        self._db: HubDB | None = None

    @property
    def db(self) -> HubDB:
        if self._db is None:
            self._db = open_db(self.db_url)
        return self._db

    def agent(self, name: str, **hub: Any) -> AgentProcess:
        """A store PC: its own disk (data dir) and API port, the store's devices.yaml otherwise."""
        config = config_dict(free_port(), [], store_id=STORE, hub_url=self.broker.url)
        config["hub"].update(hub)
        agent = self.make_agent(workdir=self.tmp_path / name, config=config)
        agent.import_catalog()
        return agent

    def drained(self, *agents: AgentProcess) -> bool:
        return all(health(a)["outbox_depth"] == 0 for a in agents)

    def hub_sales(self) -> Counter:
        """client_sale_id -> how many times the hub holds it, over every stream of the store."""
        counts: Counter = Counter()
        for stream, seq, _, type_ in self.db.store_events(STORE):
            if type_ == "retail.sale.completed":
                row = self.db.query("SELECT event FROM events WHERE store = ? AND stream = ? AND seq = ?",
                                    (STORE, stream, seq))
                counts[json.loads(row[0][0])["data"]["client_sale_id"]] += 1
        return counts

    def assert_exactly_once(self, sales: list[str], *agents: AgentProcess) -> None:
        """Wait for the agents' outboxes to drain, then check the promise."""
        wait_for("every outbox drained", lambda: self.drained(*agents), 90)
        held = self.hub_sales()
        assert len(sales) == len(set(sales))
        assert not [k for k, c in held.items() if c > 1], "a sale is at the hub twice"
        assert set(held) == set(sales), f"{len(set(sales) - set(held))} sales that got their 201 are not at the hub"
        for s in self.db.streams(STORE):
            if s.events:
                assert s.contiguous == s.high == s.events, s
        assert not [g for g in self.db.gaps(STORE) if g.closed_at is None], self.db.gaps(STORE)
        assert self.db.conflicts(STORE) == [] and self.db.store(STORE).conflicts == 0

    def issues(self, code: str | None = None, open_only: bool = True) -> list:
        """The store's identity issues at the hub (open ones by default), of ``code`` if given."""
        return [i for i in self.db.identity_issues(STORE, open_only=open_only) if code in (None, i.code)]

    def close(self) -> None:
        self.hub.close()
        if self._db is not None:
            self._db.close()
