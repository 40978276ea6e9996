"""Personal data over the day: a sale's member leaves the store once the hub has it and retention passed.

The rig runs the agent with ``privacy.retention_days`` of ``Timers.privacy_retention`` seconds and a
``privacy.sweep_interval`` of ``Timers.privacy_sweep`` (edge_agent/privacy.py). ``PrivacyWatch`` reads
the agent's store (read-only, beside the running agent) every ``every`` s, each time in one read
transaction, and checks (row ``PRIVACY``):

- every sale up to the sweep's cursor (``meta.privacy_swept_seq``) has no member id left, and one that
  had a member (the ledger's posted body) has its pseudonym instead;
- every sale past what the hub acknowledged (``meta.acked_seq``) still has its member id as sold:
  the hub must get it whole, however old it is (the hub-down fault makes such sales old);
- the sweep is not late: no acknowledgement (``acks``) older than retention plus three sweep intervals
  and ``LATE_SLACK`` is still waiting for it.

At the end of the day (``judge``): at least one sale with a member was swept, and the hub's copy of each
swept sale still names its member (the store's sweep never reaches the hub). Returns of swept sales go
through the associates' ordinary returns (``ANSWERS`` flags one refused).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_agent.store import codec
from soak import checks as rows
from soak.day import Day
from soak.invariants import hub_events

LATE_SLACK = 20.0  # seconds: a sweep waits behind checkouts in the group commit on a loaded machine


class PrivacyWatch(threading.Thread):
    """Reads the agent's store every ``every`` s; ``judge()`` at the end of the day."""

    def __init__(self, day: Day, every: float = 5.0):
        super().__init__(name="soak-privacy", daemon=True)
        self.day = day
        self.every = every
        self.swept_upto = 0          # sales up to this seq were judged swept
        self.swept_members: set[str] = set()   # sale ids with a member judged pseudonymised

    def run(self) -> None:
        while not self.day.stop.wait(self.every):
            self.look()

    def _read(self) -> tuple[int, int, list[tuple[int, bytes, bytes]], str | None] | None:
        agent = self.day.rig.agent
        if agent is None:
            return None
        path = agent.data_dir / "store.db"
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error:
            return None
        try:
            conn.execute("BEGIN")  # one snapshot: the cursor, the acks and the rows agree
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                                     "('privacy_swept_seq', 'acked_seq')").fetchall())
            swept, acked = int(meta.get("privacy_swept_seq", 0)), int(meta.get("acked_seq", 0))
            sales = conn.execute("SELECT seq, sale_id, body FROM sales WHERE seq > ?",
                                 (min(self.swept_upto, acked),)).fetchall()
            oldest = conn.execute("SELECT min(at) FROM acks").fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.Error:
            return None  # the agent is being killed or migrating: look again next time
        finally:
            conn.close()
        return swept, acked, sales, oldest

    def look(self) -> None:
        got = self._read()
        if got is None:
            return
        swept, acked, sales, oldest = got
        c = self.day.checks
        ledger = {s.sale_id: s for s in self.day.ledger.sales_list()}
        for seq, sale_id, body in sales:
            sale = ledger.get(codec.uuid_text(sale_id))
            member = (sale.body.get("member_id") if sale else None)
            event = codec.unpack(body)["event"]
            if seq <= swept and seq > self.swept_upto:
                ok = event.get("member_id") is None and (not member or bool(event.get("member_pseudonym")))
                c.check(rows.PRIVACY, ok, "a swept sale keeps no member id, only its pseudonym",
                        "member_id null" + (", member_pseudonym set" if member else ""),
                        {k: event.get(k) for k in ("member_id", "member_pseudonym")}, seq=seq)
                if ok and member and sale:
                    self.swept_members.add(sale.sale_id)
            elif seq > acked and member:
                c.check(rows.PRIVACY, event.get("member_id") == member,
                        "a sale the hub has not acknowledged keeps its member id as sold", member,
                        event.get("member_id"), seq=seq, acked_seq=acked)
        self.swept_upto = max(self.swept_upto, swept)
        t = self.day.rig.timers
        if oldest is not None:
            late = datetime.now(timezone.utc) - datetime.fromisoformat(oldest)
            allowed = timedelta(seconds=t.privacy_retention + 3 * t.privacy_sweep + LATE_SLACK)
            c.check(rows.PRIVACY, late <= allowed, "the sweep is not late: an ack waits at most retention "
                    "+ 3 sweeps", f"<= {allowed.total_seconds():.0f} s", f"{late.total_seconds():.0f} s",
                    oldest_ack=oldest)

    def judge(self) -> None:
        """At the end of the day: one more look, then the swept sales' members at the hub."""
        self.look()
        c = self.day.checks
        c.check(rows.PRIVACY, bool(self.swept_members), "sales with a member were swept during the day",
                ">= 1", len(self.swept_members))
        at_hub: dict[str, Any] = {d.get("sale_id"): d.get("member_id") for _, _, type_, d in
                                  hub_events(self.day.rig.hub_db) if type_ == "retail.sale.completed"}
        ledger = {s.sale_id: s for s in self.day.ledger.sales_list()}
        wrong = [sid for sid in self.swept_members if at_hub.get(sid) != ledger[sid].body.get("member_id")]
        c.check(rows.PRIVACY, not wrong, "the hub's copy of each swept sale still names its member", [],
                wrong[:5], swept=len(self.swept_members))
        self.day.ledger.did("sales swept of their member", len(self.swept_members))
