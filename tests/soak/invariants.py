"""The promises checked all along: each checker reads the store from the outside and counts in ``Checks``.

- ``LabelWatch``: every label's picture (the AP's screen, the PNG file) is
  judged by its pixels: the price, old-price and promotion blocks must equal
  the project's renderer's drawing of the checkout's current product
  (``GET /v1/products``) within the grace after each change, the "ask staff"
  notice must never be shown for a product the kiosk sells, and the store
  count must follow a stable stock within the grace.
- ``hub_ledger``: every sale, return and order answered 201 (by the soak's
  agent, or by the second PC of the identity fault) is in the hub's database
  exactly once across the store's streams; each stream (one per run of a
  store database) is gapless from seq 1; nothing is kept aside as a
  conflict but the stale event the soak injected.
- ``drains``: ``GET /v1/health`` ``outbox_depth`` is back to 0 within a bound.
- ``slips``: each return's slip and each pickup order's pick ticket, printed once.
- ``receipts``: each sale's receipt, read back from its kiosk's printer
  emulator, has its lines, promotions and total, and is printed once (a copy
  after an agent's SIGKILL must say REPRINT).
- ``FeedLog``: the store's live feed (as the admin sees it) in ``feed.jsonl``, to look a lost scan up.
- ``ResourceWatch``: RSS, open files and log volume of each agent
  incarnation stay flat after warm-up; no traceback in the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from PIL import Image
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from drivers.shelf_label.models import LabelModel, get_model
from drivers.shelf_label.render import render_notice
from edge_agent.catalog import Product
from edge_agent.labels.plan import NOTICE_PRICE, desire, draw
from soak import checks as rows
from soak.day import SKUS, Day
from soak.rig import AP_LABELS, FILE_LABELS, STORE, TOKENS, URL_TEMPLATE, LabelSpot

TZ = ZoneInfo("Asia/Shanghai")
PRICE_BLOCKS = ("price", "old_price", "promo_until")
_INVERSE_TURN = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


# Labels -------------------------------------------------------------------------------

def _layout(img: Image.Image, model: LabelModel) -> Image.Image:
    """A panel picture turned back to the layout the template's boxes are in, as RGB."""
    img = img.convert("RGB")
    return img.transpose(_INVERSE_TURN[model.rotation]) if model.rotation else img


def _crop(img: Image.Image, model: LabelModel, kinds: tuple[str, ...]) -> bytes:
    """The pixels of the template's blocks of ``kinds``, concatenated."""
    out = b""
    for block in model.template.blocks:
        if block.kind in kinds:
            x, y, w, h = block.box
            out += img.crop((x, y, x + w, y + h)).tobytes()
    return out


@dataclass
class _Watch:
    """What the watcher knows of one label: since when its expected picture is what it is now."""

    key: tuple | None = None
    since: float = 0.0
    stock: int | None = None
    stock_since: float = 0.0
    reported: tuple | None = None  # the episode already reported, so one wrong picture is one violation
    stock_reported: int | None = None  # the stale store count already reported


class LabelWatch(threading.Thread):
    """Every ``every`` s, judge each label's picture against the checkout's current product."""

    def __init__(self, day: Day, every: float = 2.0, slack: float = 15.0, reconnect: float = 30.0):
        super().__init__(name="soak-labels", daemon=True)
        self.day = day
        self.every = every
        # Beyond the compliance grace: a tag's next check-in, the poll that confirms it, a loaded machine.
        self.allowed = day.rig.timers.compliance_grace + slack
        # After the AP or the agent was down: the supervisor's reconnect backoff (capped at 30 s) comes first.
        self.reconnect = reconnect
        self.http = day.rig.client("console-1")  # not a kiosk: its calls must not look like a customer's
        self.admin = day.rig.client("admin")
        self.watch: dict[str, _Watch] = {}
        self._expected: dict[tuple, tuple[bytes, bytes]] = {}
        self._notice: dict[str, bytes] = {}

    def run(self) -> None:
        while not self.day.stop.wait(self.every):
            try:
                self.sweep()
            except (httpx.HTTPError, OSError, ValueError) as err:
                self.skipped(err)

    def skipped(self, err: Exception) -> None:
        """A round that judged no label: a note while the agent is down or just back (its connection
        refused), else a violation: an API that errs or answers what a product is not hides every label."""
        d = self.day
        if d.outages.since_clear("agent") < self.reconnect and isinstance(err, httpx.TransportError):
            d.checks.note("label watch skipped a round while the agent restarted")
            return
        d.checks.fail(rows.LABELS, "a round of the label watch reads every product and picture", "no error",
                      repr(err)[:400], incarnation=d.rig.incarnation)

    def spots(self) -> list[LabelSpot]:
        """Every label with the product the soak bound it to (the config, or an associate's bind)."""
        out = []
        for spot in (*AP_LABELS, *FILE_LABELS):
            sku, _ = self.day.ledger.binding(spot.label) if spot.label in self.day.ledger.bindings else (spot.sku, 0)
            out.append(LabelSpot(spot.label, spot.device, spot.model, sku))
        return out

    def picture(self, spot: LabelSpot) -> Image.Image | None:
        """What the label shows: the tag's screen at the AP, or the PNG file."""
        if spot.device == "labels-ap":
            return self.day.rig.ap.shown(spot.label)
        path = self.day.rig.labels_dir / f"{spot.label}.png"
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy()
        except (FileNotFoundError, OSError):
            return None

    def sweep(self) -> None:
        d = self.day
        if d.outages.active("agent"):
            return
        # The pictures first, then the products: a picture is then never newer than the product it is judged
        # against (a price that lands between the two reads changes the product's key and so restarts its grace;
        # read the other way round, a push landing mid-sweep showed a newer price than the product read before).
        spots = self.spots()
        pictures = {spot.label: self.picture(spot) for spot in spots}
        products = {sku: self.http.get(f"/v1/products/{sku}").json() for sku in SKUS}
        now = time.monotonic()
        at = datetime.now(timezone.utc)
        for spot in spots:
            if spot.sku is None:
                continue
            product = products[spot.sku]
            w = self.watch.setdefault(spot.label, _Watch())
            model = get_model(spot.model)
            desired = desire(spot.sku, Product.model_validate(product), spot.model, at,
                             url=URL_TEMPLATE.format(sku=spot.sku), tz=TZ)
            # Everything the price blocks show: the price, and during a promotion the regular price and its end.
            content = desired.content
            key = (spot.sku, desired.price, desired.checkout, content.promo if content else None,
                   content.price if content else None)
            _, bound_at = d.ledger.binding(spot.label)
            if key != w.key:
                w.key, w.since = key, now
            if product.get("stock_store") != w.stock:
                w.stock, w.stock_since = product.get("stock_store"), now
            # Grace starts again at each change, at a bind, and when a fault that stops pushes clears.
            outage = ("ap",) if spot.device == "labels-ap" else ()
            quiet = min(now - max(w.since, bound_at),
                        d.outages.since_clear("agent", *outage) - self.reconnect)
            shown = pictures[spot.label]
            ids = {"label": spot.label, "device": spot.device, "sku": spot.sku, "incarnation": d.rig.incarnation,
                   "catalog_version": product.get("version")}
            if shown is not None and self._is_notice(shown, model):
                self._report(w, ("notice", key), "shows the 'ask staff' notice for a product the kiosk sells",
                             f"{desired.checkout}", "notice: " + NOTICE_PRICE, **ids)
                continue
            if quiet < self.allowed:
                continue
            price_px, stock_px = self._expected_crops(desired, spot, model, product)
            got = None if shown is None else _layout(shown, model)
            if got is None or _crop(got, model, PRICE_BLOCKS) != price_px:
                if w.reported != ("price", key):
                    ids.update(self.evidence(spot, shown, desired))
                self._report(w, ("price", key), f"picture's price blocks differ from the checkout's for "
                             f"{quiet:.0f} s (grace {self.allowed:.0f} s)",
                             f"{desired.price} (checkout {desired.checkout})",
                             "no picture" if got is None else "other pixels", **ids)
                continue
            d.checks.ok(rows.LABELS)
            w.reported = None
            stable = min(now - w.stock_since, quiet)
            if stock_px and stable >= self.allowed:
                if _crop(got, model, ("stock_store",)) == stock_px:
                    d.checks.ok(rows.LABELS)
                    w.stock_reported = None
                elif w.stock_reported != w.stock:  # one violation per stale count
                    w.stock_reported = w.stock
                    ids.update(self.evidence(spot, shown, desired))  # both pictures, the agent's view of the label
                    d.checks.fail(rows.LABELS, f"'in store' count differs from the store's stock for {stable:.0f} s",
                                  product.get("stock_store"), "other pixels", **ids)

    def evidence(self, spot: LabelSpot, shown: Image.Image | None, desired: Any) -> dict[str, Any]:
        """What to debug a wrong picture with: both pictures as PNGs in the run dir, the agent's view of
        the label, and (on the AP) which of the label's uploads the tag shows."""
        out: dict[str, Any] = {}
        folder = self.day.rig.run_dir / "label-evidence"
        folder.mkdir(exist_ok=True)
        stem = f"{spot.label}-{self.day.ledger.elapsed():.0f}s"
        draw(desired)[0].save(folder / f"{stem}-expected.png")
        if shown is not None:
            shown.save(folder / f"{stem}-shown.png")
        out["pictures"] = str(folder / f"{stem}-*.png")
        try:
            view = self.admin.get(f"/v1/labels/{spot.label}").json()
            out["agent_says"] = {k: view.get(k) for k in ("price", "content_hash", "desired_hash", "pushed_at",
                                                           "confirmed_at", "compliant", "reason", "pending")}
        except (httpx.HTTPError, ValueError) as err:
            out["agent_says"] = repr(err)
        if spot.device == "labels-ap":
            ap = self.day.rig.ap
            with ap.lock:
                tag = ap.tags[spot.label]
                mine = [u for u in ap.uploads if u.mac == spot.label]
                source, queued = tag.source, len(tag.queue)
            digests = [hashlib.md5(u.data).digest() for u in mine]
            shows = digests.index(source) + 1 if source in digests else None
            out["ap"] = f"tag shows upload {shows} of {len(mine)}, {queued} queued"
        return out

    def _report(self, w: _Watch, episode: tuple, what: str, expected: Any, got: Any, **ids: Any) -> None:
        if w.reported == episode:
            return  # the same wrong picture as last time: one violation per episode
        w.reported = episode
        self.day.checks.fail(rows.LABELS, what, expected, got, **ids)

    def _is_notice(self, shown: Image.Image, model: LabelModel) -> bool:
        if model.name not in self._notice:
            self._notice[model.name] = render_notice(NOTICE_PRICE, model).convert("RGB").tobytes()
        return shown.convert("RGB").tobytes() == self._notice[model.name]

    def _expected_crops(self, desired: Any, spot: LabelSpot, model: LabelModel, product: dict) -> tuple[bytes, bytes]:
        key = (desired.hash, spot.model)
        if key not in self._expected:
            image, _ = draw(desired)
            layout = _layout(image, model)
            stock = _crop(layout, model, ("stock_store",)) if product.get("stock_store", -1) >= 0 else b""
            self._expected[key] = (_crop(layout, model, PRICE_BLOCKS), stock)
        return self._expected[key]


# The hub's database ----------------------------------------------------------------------

ID_FIELD = {"retail.sale.completed": "sale_id", "retail.return.accepted": "return_id",
            "retail.order.placed": "order_id"}


def hub_read(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one read of the hub's SQLite database, opened read-only beside the running hub."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def hub_events(db_path: Path) -> list[tuple[str, int, str, dict]]:
    """(stream, seq, type, data) of every event of the soak store in the hub's database."""
    rows_ = hub_read(db_path, "SELECT stream, seq, type, event FROM events WHERE store = ? ORDER BY stream, seq",
                     (STORE,))
    return [(stream, seq, type_, json.loads(event).get("data") or {}) for stream, seq, type_, event in rows_]


def hub_conflicts(db_path: Path) -> list[dict[str, Any]]:
    """The soak store's events the hub kept aside (``conflicts``), each with its stored event parsed."""
    cols = ("stream", "seq", "id", "kept_id", "type", "event")
    return [{**dict(zip(cols, r)), "event": json.loads(r[5])} for r in hub_read(
        db_path, f"SELECT {', '.join(cols)} FROM conflicts WHERE store = ? ORDER BY received_at", (STORE,))]


def missing_seqs(events: list[tuple[str, int, str, dict]]) -> set[tuple[str, int]]:
    """(stream, seq) of every hole: each stream of the store runs 1..its highest seq."""
    held: dict[str, set[int]] = {}
    for stream, seq, _, _ in events:
        held.setdefault(stream, set()).add(seq)
    return {(stream, n) for stream, seqs in held.items() for n in range(1, max(seqs) + 1) if n not in seqs}


def _streams_text(holes: list[tuple[str, int]]) -> str:
    out: dict[str, list[int]] = {}
    for stream, seq in holes:
        out.setdefault(stream[:8] or "(legacy)", []).append(seq)
    return "; ".join(f"stream {s}: {q[:10]}{'...' if len(q) > 10 else ''}" for s, q in out.items())


def hub_ledger(day: Day, final: bool) -> None:
    """Every stream gapless at the hub (during the day: no hole still open since the last look, as a batch
    may be on its way), and no event kept aside as a conflict but those the soak injected; at the end,
    also no open gap in the hub's ``gaps`` and every 201 there exactly once across all streams."""
    d = day
    events = hub_events(d.rig.hub_db)
    missing = missing_seqs(events)
    stuck = sorted(missing if final else missing & d.open_gaps)
    d.open_gaps = missing
    highs: dict[str, int] = {}
    for stream, seq, _, _ in events:
        highs[stream] = max(seq, highs.get(stream, 0))
    d.checks.check(rows.HUB, not stuck, "each stream's seqs at the hub are gapless"
                   + ("" if final else " (a hole stays)"),
                   ", ".join(f"{s[:8] or '(legacy)'} 1..{h}" for s, h in highs.items()) or "no event",
                   f"missing {_streams_text(stuck)}")
    injected = {e["id"] for e in d.injected}
    strays = [c for c in hub_conflicts(d.rig.hub_db) if c["id"] not in injected]
    d.checks.check(rows.HUB, not strays, "no event kept aside as a conflict but those the soak injected", [],
                   [{k: c[k] for k in ("stream", "seq", "id", "kept_id", "type")} for c in strays[:5]])
    if not final:
        return
    open_gaps = hub_read(d.rig.hub_db, "SELECT stream, first_seq, last_seq, opened_at FROM gaps "
                         "WHERE store = ? AND closed_at IS NULL", (STORE,))
    d.checks.check(rows.HUB, not open_gaps, "no open gap in the hub's gaps at the end of the day", [], open_gaps[:10])
    seen: dict[str, list[tuple[str, int]]] = {}
    for stream, seq, type_, data in events:
        field = ID_FIELD.get(type_)
        if field and data.get(field):
            seen.setdefault(str(data[field]), []).append((stream[:8], seq))
    with d.ledger.lock:
        expected = [("sale", s) for s in d.ledger.sales] + [("return", r) for r in d.ledger.returns] + \
                   [("order", o) for o in d.ledger.orders] + [("second PC's sale", s) for s in d.ledger.elsewhere]
    for kind, ident in expected:
        at = seen.get(ident, [])
        d.checks.check(rows.HUB, len(at) == 1, f"{kind} answered 201 is at the hub exactly once", 1,
                       f"{len(at)} times (stream, seq: {at})", **{kind.split()[-1]: ident})
    held_ids = {r[0] for r in hub_read(d.rig.hub_db, "SELECT id FROM events WHERE store = ?", (STORE,))}
    for event in d.injected:
        d.checks.check(rows.HUB, event["id"] not in held_ids, "an injected stale event is not among the store's "
                       "events (not counted as a sale)", "kept aside only", "in the events table", event=event["id"])


def drains(day: Day, why: str, bound: float, agent: Any = None) -> None:
    """The outbox is back to 0 (``GET /v1/health``) within ``bound`` s after an outage cleared; of the
    soak's agent, or of ``agent`` (the second PC)."""
    deadline = time.monotonic() + bound
    last: Any = None
    with day.rig.client(None, agent=agent) as http:
        while time.monotonic() < deadline:
            try:
                last = http.get("/v1/health").json().get("outbox_depth")
            except httpx.HTTPError as err:
                last = repr(err)
            if last == 0:
                day.checks.ok(rows.DRAIN)
                return
            time.sleep(0.2)  # a poll interval
    day.checks.fail(rows.DRAIN, f"outbox_depth after {why}", f"0 within {bound:.0f} s", last)


# Receipts ---------------------------------------------------------------------------------

def receipts(day: Day) -> None:
    """Each sale's receipt on its kiosk's printer: its lines, promotions and total, printed once."""
    d = day
    printed: dict[str, list[Any]] = {}
    for kiosk in d.rig.printers:
        for receipt in d.rig.receipts(kiosk):
            if any(line.startswith("Return ") for line in receipt.lines):
                continue  # a return slip: its "Sale" line names the sale returned from
            for line in receipt.lines:
                if line.startswith("Sale "):
                    printed.setdefault(line.split()[-1], []).append(receipt)
    with d.ledger.lock:
        kills = list(d.ledger.kills)
    for sale in d.ledger.sales_list():
        ids = {"sale": sale.sale_id, "station": sale.station, "print_job": sale.print_job,
               "incarnation": sale.incarnation}
        copies = printed.get(sale.sale_id, [])
        unmarked = [r for r in copies if "*** REPRINT ***" not in r.text]
        reprints = len(copies) - len(unmarked)
        # A receipt cut short by a kill is followed by a REPRINT copy: judge the content on a whole one.
        whole = sorted((r for r in copies if r.end == "cut"), key=lambda r: "*** REPRINT ***" in r.text)
        killed_after = any(k >= sale.at - 1 for k in kills)
        d.checks.check(rows.RECEIPT, len(unmarked) <= 1, "receipt printed once (copies without REPRINT)", 1,
                       len(unmarked), **ids)
        d.checks.check(rows.RECEIPT, reprints == 0 or killed_after, "a REPRINT copy without an agent kill after it",
                       0, reprints, **ids)
        if not d.checks.check(rows.RECEIPT, bool(whole), "a whole receipt (up to its cut) came out", ">= 1",
                              f"{len(whole)} of {len(copies)} copies", **ids):
            continue
        text = whole[0].text
        answer = sale.answer
        missing = [ln["amount"] for ln in answer["lines"] if ln["amount"] not in text]
        d.checks.check(rows.RECEIPT, not missing, "receipt has every line's amount", [ln["amount"] for ln in
                       answer["lines"]], f"missing {missing}", **ids)
        total = f"{answer['currency']} {answer['total']}"
        total_line = next((ln for ln in whole[0].lines if ln.startswith("TOTAL")), "")
        d.checks.check(rows.RECEIPT, total_line.endswith(total), "receipt's TOTAL", total, total_line, **ids)
        # A line priced at the promotion's price the kiosk saw must show that promotion.
        promo = [label for ln in answer["lines"] if (label_price := sale.promos.get(ln["sku"]))
                 and ln["unit_price"] == label_price[1] for label in (label_price[0],)]
        lacking = [label for label in promo if label not in text]
        d.checks.check(rows.RECEIPT, not lacking, "receipt shows each promotion the sale got", promo,
                       f"missing {lacking}", **ids)


def slips(day: Day) -> None:
    """Each return's slip (on the PAD's slip printer) and each pickup order's pick ticket, printed once."""
    d = day
    returns: dict[str, int] = {}
    tickets: dict[str, int] = {}
    for kiosk in d.rig.printers:
        for receipt in d.rig.receipts(kiosk):
            if "*** REPRINT ***" in receipt.text:
                continue
            ticket = "PICK TICKET" in receipt.text
            for line in receipt.lines:
                if line.startswith("Return ") and not ticket:
                    returns[line.split()[-1]] = returns.get(line.split()[-1], 0) + 1
                elif line.startswith("Order ") and ticket:
                    tickets[line.split()[-1]] = tickets.get(line.split()[-1], 0) + 1
    with d.ledger.lock:
        done = list(d.ledger.returns)
        orders = [*d.ledger.hub_orders, *d.ledger.orders]
    for return_id in done:
        d.checks.check(rows.PAPER, returns.get(return_id, 0) == 1, "return slip printed once", 1,
                       returns.get(return_id, 0), **{"return": return_id})
    for order_id in orders:
        d.checks.check(rows.PAPER, tickets.get(order_id, 0) == 1, "pick ticket printed once", 1,
                       tickets.get(order_id, 0), order=order_id)


# Resources ---------------------------------------------------------------------------------

@dataclass
class Sample:
    at: float
    incarnation: int
    rss_kb: int
    fds: int
    log_bytes: int


class ResourceWatch(threading.Thread):
    """Samples the agent's /proc every ``every`` s; ``judge()`` at the end checks each incarnation."""

    def __init__(self, day: Day, every: float = 2.0, warmup: float = 30.0):
        super().__init__(name="soak-resources", daemon=True)
        self.day = day
        self.every = every
        self.warmup = warmup
        self.samples: list[Sample] = []

    def run(self) -> None:
        while not self.day.stop.wait(self.every):
            pid = self.day.rig.agent_pid()
            if pid is None:
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rss = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, StopIteration, ValueError):
                continue  # it died between the two reads
            log = self.day.rig.agent.log_path.stat().st_size if self.day.rig.agent else 0
            self.samples.append(Sample(time.monotonic(), self.day.rig.incarnation, rss, fds, log))

    def judge(self, rss_growth_mb: float = 60.0, fd_growth: int = 25, log_kb_per_min: float = 300.0) -> None:
        """Per incarnation: growth after warm-up within bounds; zero tracebacks in the agent's log."""
        d = self.day
        for inc in sorted({s.incarnation for s in self.samples}):
            mine = [s for s in self.samples if s.incarnation == inc]
            warm = [s for s in mine if s.at - mine[0].at >= self.warmup]
            if len(warm) < 3:
                continue
            first, last = warm[0], warm[-1]
            # Against the lowest after warm-up: growth, not a peak at the start.
            rss = (max(s.rss_kb for s in warm[len(warm) // 2:]) - min(s.rss_kb for s in warm[:len(warm) // 2])) / 1024
            d.checks.check(rows.RESOURCES, rss <= rss_growth_mb, "RSS growth after warm-up (MB)",
                           f"<= {rss_growth_mb}", round(rss, 1), incarnation=inc,
                           rss_mb=f"{first.rss_kb / 1024:.0f}->{last.rss_kb / 1024:.0f}")
            fds = last.fds - min(s.fds for s in warm)
            d.checks.check(rows.RESOURCES, fds <= fd_growth, "open files growth after warm-up", f"<= {fd_growth}",
                           fds, incarnation=inc, fds=f"{first.fds}->{last.fds}")
            minutes = max((last.at - first.at) / 60, 1e-9)
            rate = (last.log_bytes - first.log_bytes) / 1024 / minutes
            d.checks.check(rows.RESOURCES, rate <= log_kb_per_min, "agent log volume (KB/min) after warm-up",
                           f"<= {log_kb_per_min}", round(rate, 1), incarnation=inc)
        log = d.rig.agent.log() if d.rig.agent else ""
        tracebacks = [part.split("\n\n")[0][:600] for part in log.split("Traceback (most recent call last):")[1:]]
        d.checks.check(rows.RESOURCES, not tracebacks, "tracebacks in the agent's log", 0,
                       f"{len(tracebacks)}: {tracebacks[:2]}")


# The live feed -----------------------------------------------------------------------------

class FeedLog(threading.Thread):
    """The store's live feed, every event written to ``feed.jsonl`` in the run dir (reconnecting across
    agent restarts), and the scans kept, so that a scan that led nowhere can be looked up. It reads as the
    admin: an associate on the feed is on duty for calls for help, and the day has a window with nobody."""

    def __init__(self, day: Day):
        super().__init__(name="soak-feed", daemon=True)
        self.day = day
        self.path = day.rig.run_dir / "feed.jsonl"
        self.scans: list[tuple[float, str | None, str]] = []  # (elapsed s, station, code)
        self._lock = threading.Lock()

    def run(self) -> None:
        with self.path.open("a") as out:
            while not self.day.stop.is_set():
                try:
                    with connect(f"{self.day.rig.agent.ws_url}/v1/events", open_timeout=10, ssl=self.day.rig.tls.context(),
                                 additional_headers={"Authorization": f"Bearer {TOKENS['admin']}"}) as ws:
                        while not self.day.stop.is_set():
                            try:
                                text = ws.recv(timeout=1)
                            except TimeoutError:
                                continue
                            out.write(text.rstrip() + "\n")
                            self._keep(json.loads(text))
                except (OSError, WebSocketException, ValueError):
                    self.day.stop.wait(1)  # the agent is restarting: connect again

    def _keep(self, event: dict) -> None:
        if event.get("type") == "scan" and isinstance(event.get("data"), dict):
            data = event["data"]
            with self._lock:
                self.scans.append((self.day.ledger.elapsed(), data.get("station"), str(data.get("code"))))

    def seen(self, station: str, part: str, since: float) -> list[float]:
        """When (elapsed s) the feed showed a code containing ``part`` scanned at ``station`` since ``since``."""
        with self._lock:
            return [round(at, 1) for at, st, c in self.scans if st == station and part in c and at >= since]
