"""What the hub sends down: catalog, stock, pickup orders, member cards, return verdicts, commands, configs, releases.

Every payload is parsed and validated here (the models of sync/topics.py)
and handed to a ``DownlinkHandler``, which the agent implements
(edge_agent/downlink_apply.py) and passes in: this module applies nothing
itself and imports nothing of the agent. Commands are checked against the
allow-list here, on the wire side, before the handler runs one: the same
checks as the consoles' (sync/console/commands.py), and ``Downlink.run`` is
the one dispatch of a command, for the hub's and for the agent's own
``/console``.

A bad payload is logged once and answered: a command on
``edge/{store}/cmd/res`` with ``ok: false``, anything else with a
``retail.device.alert`` event (telemetry) saying what was wrong. Nothing here
can stop the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from edge_core.logonce import LogOnce
from sync import topics
from sync.console.commands import AGENT, REOPEN, ActionRefused, check

if TYPE_CHECKING:
    from sync.link import HubLink

log = logging.getLogger(__name__)

# The largest hub/{store}/update payload: a version, a url of 2 KiB, a hash and two short names.
MAX_UPDATE_BYTES = 8 * 1024

class CommandError(Exception):
    """A command that cannot be carried out; the message goes back in ``error``."""


class UnknownDevice(ActionRefused):
    """A command for a device this store does not have."""


class DownlinkHandler(Protocol):
    """What the downlink hands validated payloads to; each method raises ``topics.PayloadError`` with the
    reason for what it refuses (the rest of the payload may have applied)."""

    async def catalog(self, items: list[topics.CatalogItem]) -> int:
        """Apply ``retail.catalog.updated`` items; returns how many were older than the store's (ignored)."""
        ...

    async def stock(self, sets: list[topics.StockSet]) -> None:
        """Apply ``retail.stock.set`` counts."""
        ...

    async def orders(self, created: list[topics.OrderCreated]) -> None:
        """Take ``retail.order.created`` pickup orders."""
        ...

    async def members(self, cards: list[topics.MemberCard], arrived: list[bool]) -> None:
        """Keep member cards; ``arrived[i]`` is True for a ``retail.member.arrived``."""
        ...

    async def returns(self, verdicts: list[topics.ReturnVerdict]) -> None:
        """Apply ``retail.return.verdict`` on pending online returns."""
        ...

    async def alert(self, data: dict[str, Any]) -> None:
        """Raise a ``retail.device.alert`` (telemetry) about a bad payload."""
        ...

    async def config(self, desired: topics.DesiredConfig) -> None:
        """Check and apply a version of devices.yaml the hub sent (its answer goes on ``config/res``)."""
        ...

    async def update(self, desired: topics.DesiredRelease) -> None:
        """The release the hub names for this store: verified, installed, switched to (answers on ``update/res``)."""
        ...

    def device_actions(self, device: str) -> tuple[str, frozenset[str]] | None:
        """``(kind, its driver's commands)`` of a device of this store, None for an unknown device."""
        ...

    def reopen(self, device: str) -> None:
        """Close and open the device again."""
        ...

    async def device_command(self, device: str, action: str, args: dict[str, Any]) -> Any:
        """Run an allowed driver command; its result goes back in ``result``."""
        ...


class HasLink(Protocol):
    """Whatever an agent command runs against: the hub link, when there is one."""

    link: "HubLink | None"


# The agent's own commands take their arguments checked (``check``, sync/console/commands.py).
async def _set_log_level(agent: HasLink, args: dict[str, Any]) -> Any:
    level = args["level"]
    for name in ("edge_agent", "drivers", "sync"):
        logging.getLogger(name).setLevel(level.upper())
    return {"level": level}


async def _resend_from(agent: HasLink, args: dict[str, Any]) -> Any:
    if agent.link is None:
        raise CommandError("this agent has no hub link")
    try:
        return {"from": agent.link.resend_from(args["seq"], args.get("stream"))}
    except ValueError as err:
        raise CommandError(str(err)) from err


async def _status(agent: HasLink, args: dict[str, Any]) -> Any:
    return await agent.link.health_snapshot() if agent.link else {}


# Commands to the agent itself (device "agent"), one per name of commands.AGENT_ACTIONS;
# device commands are each driver's ``commands`` plus ``reopen`` for every device.
AGENT_COMMANDS: dict[str, Callable[[HasLink, dict[str, Any]], Awaitable[Any]]] = {
    "set_log_level": _set_log_level,
    "resend_from": _resend_from,
    "status": _status,
}


class Downlink:
    """Parses and validates downlink payloads by kind and hands them to the handler."""

    def __init__(self, store_id: str, handler: DownlinkHandler, publish: Callable[[str, bytes], None],
                 link: "HubLink | None" = None):
        self.handler = handler
        self.publish = publish
        # For the agent's own commands (resend_from, status); the agent sets it once the link exists.
        self.link = link
        self.topics = topics.StoreTopics(store_id)
        self.stats = {"accepted": 0, "rejected": 0, "stale": 0}
        self._log_once = LogOnce(log)

    async def handle(self, kind: str, payload: bytes) -> None:
        """Handle one payload from ``hub/{store}/{kind}`` (or ``hub/all/catalog``)."""
        if kind == "cmd":
            await self._command(payload)
            return
        if kind == "config":
            await self._config(payload)
            return
        if kind == "update":
            await self._update(payload)
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
        await self.handler.alert(data)

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
        items = self._data(events, {"retail.catalog.updated"}, topics.CatalogItem)
        self.stats["stale"] += await self.handler.catalog(items)

    async def _stock(self, events: list[topics.CloudEvent]) -> None:
        await self.handler.stock(self._data(events, {"retail.stock.set"}, topics.StockSet))

    async def _orders(self, events: list[topics.CloudEvent]) -> None:
        await self.handler.orders(self._data(events, {"retail.order.created"}, topics.OrderCreated))

    async def _members(self, events: list[topics.CloudEvent]) -> None:
        cards = self._data(events, {"retail.member.arrived", "retail.member.card"}, topics.MemberCard)
        await self.handler.members(cards, [e.type == "retail.member.arrived" for e in events])

    async def _returns(self, events: list[topics.CloudEvent]) -> None:
        await self.handler.returns(self._data(events, {"retail.return.verdict"}, topics.ReturnVerdict))

    async def _config(self, payload: bytes) -> None:
        if not payload:
            return  # a retained config cleared at the hub: nothing to apply
        # The YAML is escaped inside JSON: allow for that before parsing anything.
        if len(payload) > 2 * topics.MAX_CONFIG_BYTES + 4096:
            await self._reject("config", f"payload of {len(payload)} bytes is over the limit for a "
                               f"{topics.MAX_CONFIG_BYTES} byte devices.yaml")
            return
        try:
            desired = topics.validate(topics.DesiredConfig, topics.decode_json(payload))
            if not desired.matches():
                raise topics.PayloadError(f"version {desired.version}: sha256 is not the hash of the YAML sent")
        except topics.PayloadError as err:
            await self._reject("config", str(err))
            return
        await self.handler.config(desired)
        self.stats["accepted"] += 1

    async def _update(self, payload: bytes) -> None:
        if not payload:
            return  # a retained release cleared at the hub: nothing to do
        if len(payload) > MAX_UPDATE_BYTES:
            await self._reject("update", f"payload of {len(payload)} bytes is over the limit of {MAX_UPDATE_BYTES}")
            return
        try:
            desired = topics.validate(topics.DesiredRelease, topics.decode_json(payload))
        except topics.PayloadError as err:
            await self._reject("update", str(err))
            return
        await self.handler.update(desired)
        self.stats["accepted"] += 1

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
            result = await self.run(cmd.device, cmd.action, cmd.args)
        except CommandError as err:
            self._answer(topics.CommandResult(id=cmd.id, ok=False, error=str(err)))
        except Exception as err:  # noqa: BLE001 - answered, logged, never fatal
            log.exception("command %s failed", cmd.id)
            self._answer(topics.CommandResult(id=cmd.id, ok=False, error=f"{type(err).__name__}: {err}"))
        else:
            self._answer(topics.CommandResult(id=cmd.id, ok=True, result=result))

    def check(self, device: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """The command's arguments, checked against the allow-list (sync/console/commands.py) with the
        actions its driver has; UnknownDevice for a device not in this store, ActionRefused otherwise."""
        if device == AGENT:
            return check(device, None, action, args)
        found = self.handler.device_actions(device)
        if found is None:
            raise UnknownDevice(f"no device {device!r} in this store")
        kind, commands = found
        return check(device, kind, action, args, (REOPEN, *sorted(commands - {REOPEN})))

    async def run(self, device: str, action: str, args: dict[str, Any]) -> Any:
        """Carry out a command once ``check`` allows it; its result. CommandError (its message the
        answer's ``error``) when refused or when it cannot be carried out; a driver's own errors pass."""
        try:
            args = self.check(device, action, args)
        except ActionRefused as err:
            raise CommandError(str(err)) from err
        if device == AGENT:
            return await AGENT_COMMANDS[action](self, args)
        if action == REOPEN:
            self.handler.reopen(device)
            return {"device": device, "reopening": True}
        return await self.handler.device_command(device, action, args)

    def _answer(self, result: topics.CommandResult) -> None:
        self.publish(self.topics.cmd_res, result.wire())
