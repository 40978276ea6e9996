"""What the hub sends down: catalog, stock, pickup orders, member cards, return verdicts, commands.

Every payload is validated. A bad one is logged once and answered: a command
on ``edge/{store}/cmd/res`` with ``ok: false``, anything else with a
``retail.device.alert`` event (telemetry) saying what was wrong. Nothing here
can stop the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge_agent import catalog, members, orders, returns, stock
from edge_core.bus import utcnow
from edge_core.logonce import LogOnce
from sync import topics
from sync.events import Priority

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")


class CommandError(Exception):
    """A command that cannot be carried out; the message goes back in ``error``."""


async def _set_log_level(agent: "Agent", args: dict[str, Any]) -> Any:
    level = args.get("level")
    if level not in LOG_LEVELS:
        raise CommandError(f"args.level must be one of {', '.join(LOG_LEVELS)}")
    for name in ("edge_agent", "drivers", "sync"):
        logging.getLogger(name).setLevel(level.upper())
    return {"level": level}


async def _resend_from(agent: "Agent", args: dict[str, Any]) -> Any:
    seq = args.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise CommandError("args.seq must be a whole number from 1")
    if agent.link is None:
        raise CommandError("this agent has no hub link")
    try:
        stream = args.get("stream")
        if stream is not None and not isinstance(stream, str):
            raise CommandError("args.stream must be a stream id (the stream of the events to send again)")
        return {"from": agent.link.resend_from(seq, stream)}
    except ValueError as err:
        raise CommandError(str(err)) from err


async def _status(agent: "Agent", args: dict[str, Any]) -> Any:
    return await agent.link.health_snapshot() if agent.link else {}


# Commands to the agent itself (device "agent"); device commands are each
# driver's ``commands`` plus ``reopen`` for every device.
AGENT_COMMANDS: dict[str, Callable[["Agent", dict[str, Any]], Awaitable[Any]]] = {
    "set_log_level": _set_log_level,
    "resend_from": _resend_from,
    "status": _status,
}


class Downlink:
    """Dispatches downlink payloads by kind."""

    def __init__(self, agent: "Agent", publish: Callable[[str, bytes], None]):
        self.agent = agent
        self.publish = publish
        self.topics = topics.StoreTopics(agent.config.store.id)
        self.stats = {"accepted": 0, "rejected": 0, "stale": 0}
        self._log_once = LogOnce(log)

    async def handle(self, kind: str, payload: bytes) -> None:
        """Handle one payload from ``hub/{store}/{kind}`` (or ``hub/all/catalog``)."""
        if kind == "cmd":
            await self._command(payload)
            return
        handler = {"catalog": self._catalog, "stock": self._stock, "orders": self._orders,
                   "members": self._members, "returns": self._returns}.get(kind)
        if handler is None:
            return
        try:
            events = topics.decode_events(payload)
            await handler(events)
        except topics.PayloadError as err:
            await self._reject(kind, str(err))
        except Exception as err:  # noqa: BLE001 - valid-looking data the store could not take
            log.debug("hub: %s payload failed after validation", kind, exc_info=True)
            await self._reject(kind, f"could not apply: {type(err).__name__}: {str(err)[:200]}")
        else:
            self.stats["accepted"] += 1

    async def _reject(self, kind: str, reason: str) -> None:
        self.stats["rejected"] += 1
        self._log_once.warning((kind, reason[:80]), "hub: bad %s payload ignored: %s", kind, reason)
        # One-shot: news of one payload, with nothing that clears it; the open alerts list it
        # for a while only (edge_agent/health.py, ONE_SHOT_FOR_S).
        data = {"device": "hub-link", "severity": "warning", "code": "bad_downlink", "one_shot": True,
                "topic_kind": kind, "message": reason[:500]}
        await self.agent.store.emit("retail.device.alert", data, Priority.TELEMETRY)
        self.agent.bus.publish("alert.raised", data)

    @staticmethod
    def _data(events: list[topics.CloudEvent], expected: set[str], model: type) -> list[Any]:
        out = []
        for i, event in enumerate(events):
            if event.type not in expected:
                raise topics.PayloadError(f"event {i}: type {event.type!r}, expected {' or '.join(sorted(expected))}")
            try:
                out.append(model.model_validate(event.data))
            except ValidationError as err:
                e = err.errors()[0]
                loc = ".".join(str(p) for p in e["loc"]) or "data"
                raise topics.PayloadError(f"event {i}: data.{loc}: {e['msg']}") from err
        return out

    async def _catalog(self, events: list[topics.CloudEvent]) -> None:
        items = self._data(events, {"retail.catalog.updated"}, catalog.CatalogItem)
        # Prices in another currency than the store's would be charged as if local.
        currency = self.agent.config.store.currency
        for item in items:
            if item.currency != currency:
                raise topics.PayloadError(f"sku {item.sku}: currency {item.currency}, the store sells in {currency}")
        applied, stale = await self.agent.store.write(lambda tx: catalog.upsert(tx.conn, items))
        self.stats["stale"] += stale
        if applied:
            self.agent.bus.publish("catalog.updated", {"skus": [i.sku for i in items], "applied": applied})

    async def _stock(self, events: list[topics.CloudEvent]) -> None:
        sets = self._data(events, {"retail.stock.set"}, topics.StockSet)

        def apply(tx: Any) -> list[str]:
            unknown = []
            for s in sets:
                if tx.execute("UPDATE products SET stock_store = ? WHERE sku = ?", (s.qty, s.sku)).rowcount == 0:
                    unknown.append(s.sku)
            return unknown

        unknown = await self.agent.store.write(apply)
        for s in sets:
            if s.sku not in unknown:
                self.agent.bus.publish("stock.changed", {"sku": s.sku, "qty": s.qty, "by": "hub"})
        if unknown:
            raise topics.PayloadError(f"stock for unknown sku(s) ignored: {', '.join(unknown[:10])}")

    async def _orders(self, events: list[topics.CloudEvent]) -> None:
        created = self._data(events, {"retail.order.created"}, topics.OrderCreated)
        # New orders and their pick tickets commit together (edge_agent/orders.py).
        new = await self.agent.store.write(lambda tx: orders.receive(tx, created, self.agent.printing))
        for order, job in new:
            if job is not None:
                self.agent.printing.notify(job.device)
            self.agent.bus.publish("order.created", {**order, "print_job": job.id if job else None})

    async def _members(self, events: list[topics.CloudEvent]) -> None:
        cards = self._data(events, {"retail.member.arrived", "retail.member.card"}, topics.MemberCard)
        now = utcnow()
        ttl = self.agent.config.loyalty.card_ttl
        await self.agent.store.write(lambda tx: members.store_cards(tx, cards, ttl, now))
        self.agent.members.cards_changed()
        for event, card in zip(events, cards):
            if event.type == "retail.member.arrived":
                await self.agent.members.arrived(card.member_id, "hub")

    async def _returns(self, events: list[topics.CloudEvent]) -> None:
        verdicts = self._data(events, {"retail.return.verdict"}, topics.ReturnVerdict)

        errors: list[str] = []

        def apply(tx: Any) -> list[tuple[topics.ReturnVerdict, dict | None, list]]:
            done = []
            errors.clear()
            for v in verdicts:
                try:
                    done.append((v, *returns.apply_verdict(tx, v.return_id, v.verdict == "approved")))
                except returns.VerdictError as err:
                    errors.append(str(err))  # the others still apply
            return done

        threshold = self.agent.config.stock.low_threshold
        for v, ret, changes in await self.agent.store.write(apply):
            if ret is not None:
                self.agent.bus.publish("return.verdict", {"return_id": v.return_id, "verdict": v.verdict,
                                                          "reason": v.reason, "order_id": ret["order_id"],
                                                          "lines": ret["lines"], "state": ret["state"]})
            stock.publish_low(self.agent.bus, changes, threshold)
        if errors:
            raise topics.PayloadError("; ".join(errors[:5]))

    async def _command(self, payload: bytes) -> None:
        try:
            raw = topics.decode_json(payload)
        except topics.PayloadError as err:
            self._answer(topics.CommandResult(id="", ok=False, error=str(err)))
            return
        cmd_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else ""
        try:
            cmd = topics.validate(topics.Command, raw)
        except topics.PayloadError as err:
            self._answer(topics.CommandResult(id=cmd_id, ok=False, error=f"bad command: {err}"))
            return
        try:
            result = await self._run(cmd)
        except CommandError as err:
            self._answer(topics.CommandResult(id=cmd.id, ok=False, error=str(err)))
        except Exception as err:  # noqa: BLE001 - answered, logged, never fatal
            log.exception("command %s failed", cmd.id)
            self._answer(topics.CommandResult(id=cmd.id, ok=False, error=f"{type(err).__name__}: {err}"))
        else:
            self._answer(topics.CommandResult(id=cmd.id, ok=True, result=result))

    async def _run(self, cmd: topics.Command) -> Any:
        """Carry out an allowed command; CommandError for anything else."""
        if cmd.device == "agent":
            handler = AGENT_COMMANDS.get(cmd.action)
            if handler is None:
                raise CommandError(f"action {cmd.action!r} is not allowed for the agent; "
                                   f"allowed: {', '.join(sorted(AGENT_COMMANDS))}")
            return await handler(self.agent, cmd.args)
        owner = self.agent.supervisor.owners.get(cmd.device)
        if owner is None:
            raise CommandError(f"no device {cmd.device!r} in this store")
        driver = owner.driver
        if cmd.action == "reopen":
            owner.reopen()
            return {"device": cmd.device, "reopening": True}
        if cmd.action not in driver.commands:
            allowed = ", ".join(sorted({"reopen", *driver.commands}))
            raise CommandError(f"action {cmd.action!r} is not allowed for {cmd.device} ({driver.kind}); "
                               f"allowed: {allowed}")
        return await driver.command(cmd.action, cmd.args)

    def _answer(self, result: topics.CommandResult) -> None:
        self.publish(self.topics.cmd_res, result.wire())
