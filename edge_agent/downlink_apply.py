"""What the hub sends down, applied to the store: catalog, stock, pickup orders, member cards, return verdicts.

``sync/downlink.py`` parses and validates each payload (the models of
``sync/topics.py``) and hands it to ``DownlinkApply``, the agent's
``sync.downlink.DownlinkHandler``: one method per kind, each one store
transaction followed by its after-commit effects (bus events, print
notifications, low-stock warnings). A refusal is a ``topics.PayloadError``
with the reason; the downlink answers it with a ``retail.device.alert``.
Device commands arrive here already allow-listed by the downlink. A devices.yaml
from the hub goes to the agent's ``ConfigApply`` (edge_agent/config_apply.py), a
release the hub names to its ``Releases`` (edge_agent/release.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent import catalog, members, orders, returns, stock
from edge_core.bus import utcnow
from sync import topics
from sync.events import Priority

if TYPE_CHECKING:
    from edge_agent.agent import Agent


class DownlinkApply:
    """The agent's side of the downlink (``sync.downlink.DownlinkHandler``)."""

    def __init__(self, agent: "Agent"):
        self.agent = agent

    async def catalog(self, items: list[topics.CatalogItem]) -> int:
        """Store the items newer than what the store has; returns how many were older (ignored)."""
        # Prices in another currency than the store's would be charged as if local.
        currency = self.agent.config.store.currency
        for item in items:
            if item.currency != currency:
                raise topics.PayloadError(f"sku {item.sku}: currency {item.currency}, the store sells in {currency}")
        applied, stale = await self.agent.store.write(lambda tx: catalog.upsert(tx.conn, items))
        if applied:
            self.agent.bus.publish("catalog.updated", {"skus": [i.sku for i in items], "applied": applied})
        return stale

    async def stock(self, sets: list[topics.StockSet]) -> None:
        """Set the store's counts; an unknown sku is refused, the others still apply."""

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

    async def orders(self, created: list[topics.OrderCreated]) -> None:
        """Store new pickup orders with their pick tickets (one commit), then print and announce them."""
        new = await self.agent.store.write(lambda tx: orders.receive(tx, created, self.agent.printing))
        for order, job in new:
            if job is not None:
                self.agent.printing.notify(job.device)
            self.agent.bus.publish("order.created", {**order, "print_job": job.id if job else None})

    async def members(self, cards: list[topics.MemberCard], arrived: list[bool]) -> None:
        """Keep the cards for ``loyalty.card_ttl``; announce the members whose ``arrived`` is True."""
        now = utcnow()
        ttl = self.agent.config.loyalty.card_ttl
        await self.agent.store.write(lambda tx: members.store_cards(tx, cards, ttl, now))
        self.agent.members.cards_changed()
        for card, here in zip(cards, arrived):
            if here:
                await self.agent.members.arrived(card.member_id, "hub")

    async def returns(self, verdicts: list[topics.ReturnVerdict]) -> None:
        """Apply the hub's verdicts on pending online returns; a verdict that cannot apply is refused,
        the others still apply."""
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

    async def alert(self, data: dict[str, Any]) -> None:
        """A bad payload: a telemetry ``retail.device.alert`` in the outbox and ``alert.raised`` on the bus."""
        await self.agent.store.emit("retail.device.alert", data, Priority.TELEMETRY)
        self.agent.bus.publish("alert.raised", data)

    async def config(self, desired: topics.DesiredConfig) -> None:
        """A version of devices.yaml from the hub: checked, applied, answered on ``config/res`` (in a task
        of its own: the downlink goes on meanwhile)."""
        self.agent.configs.take(desired)

    async def update(self, desired: topics.DesiredRelease) -> None:
        """A release the hub names: downloaded, verified, installed and switched to in a task of its own."""
        self.agent.releases.take(desired)

    def device_actions(self, device: str) -> tuple[str, frozenset[str]] | None:
        """``(kind, the driver's own commands)`` of a device of this store, or None."""
        owner = self.agent.supervisor.owners.get(device)
        if owner is None:
            return None
        return owner.driver.kind, frozenset(owner.driver.commands)

    def reopen(self, device: str) -> None:
        """Close and open a device again."""
        self.agent.supervisor.owners[device].reopen()

    async def device_command(self, device: str, action: str, args: dict[str, Any]) -> Any:
        """Run a driver command the downlink has allowed."""
        return await self.agent.supervisor.owners[device].driver.command(action, args)
