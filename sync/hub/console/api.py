"""The hub console's JSON API and live stream (``/api/...``); every call needs a console token.

| call | what |
|---|---|
| ``GET /api/meta`` | who you are, the rules, what actions exist |
| ``GET /api/fleet`` | every store's summary, the live alerts, and ``configs``: the hub's side of each store's
  devices.yaml (newest version pushed, the newest answered and its state) |
| ``GET /api/configs`` | ``configs`` alone (the fleet view reads it again now and then: no snapshot carries it) |
| ``GET /api/stores/{store}`` | devices, snapshot, 24-hour timeline, alerts, device alerts, commands, identity,
  the hub's desired devices.yaml version and the store's word on it, the release it runs and its latest word on
  a rollout |
| ``GET /api/alerts?store=&resolved=`` | alerts, newest first |
| ``POST /api/alerts/{id}/ack`` / ``/resolve`` | staff take or close an alert (409 while its cause is there,
  unless its rule's cause never clears by itself) |
| ``POST /api/stores/{store}/commands`` | ``{device, action, args}``: 202 with the command, answered on the stream |
| ``GET /api/commands/{id}`` | a command and its answer or timeout |
| ``GET /api/rollouts?id=&limit=`` | staged rollouts of releases, newest first: waves, each store's state, version
  asked and running, health, and every action with who did it |
| ``POST /api/rollouts/{id}/halt`` / ``/resume`` / ``/rollback`` | staff pause a running rollout, carry on one
  halted by hand, or halt it and ask its stores back (sync/hub/fleet/rollout.py, kept in ``rollout_actions`` with
  the staff member's name); 200 with the rollout, 404, or 409 when its state does not allow it |
| ``GET /api/stream`` | Server-Sent Events: ``hello``, then ``update`` with changed stores, alerts, commands |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from sync.hub.console import alerts, history
from sync.hub.console.alerts import CauseStillThere
from sync.console.commands import AGENT, ActionRefused, check
from sync.console.facts import devices
from sync.console.views import iso_now, meta, store_detail
from sync.hub.console.auth import staff
from sync.hub.console.fleet import desired_configs
from sync.hub.fleet import desired, rollout, rollout_status

router = APIRouter(prefix="/api", tags=["console"])


class CommandRequest(BaseModel):
    """A remote action for one device of a store (or ``device: agent``)."""

    device: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


def _console(request: Request) -> Any:
    return request.app.state.console


@router.get("/meta")
async def get_meta(request: Request, who: str = Depends(staff)) -> dict[str, Any]:
    """Who is asking, the rules in force, the actions the page may offer."""
    c = _console(request)
    return meta("hub", who, c.version, c.desk.timeout_s, c.rules)


@router.get("/fleet", dependencies=[Depends(staff)])
async def get_fleet(request: Request) -> dict[str, Any]:
    """Every store's summary, every live alert, the hub's side of every store's devices.yaml."""
    c = _console(request)
    live, configs = await c.db.read(lambda db: (alerts.listing(db, limit=5000), desired_configs(db)))
    return {"now": iso_now(datetime.now(timezone.utc)), "stores": c.fleet.summaries(), "alerts": live,
            "configs": configs}


@router.get("/configs", dependencies=[Depends(staff)])
async def get_configs(request: Request) -> dict[str, Any]:
    """The hub's side of every store's devices.yaml: newest version pushed, newest answered and its state."""
    configs = await _console(request).db.read(desired_configs)
    return {"now": iso_now(datetime.now(timezone.utc)), "configs": configs}


@router.get("/stores/{store}", dependencies=[Depends(staff)])
async def get_store(store: str, request: Request) -> dict[str, Any]:
    """One store: devices, snapshot, the last 24 hours of device states, alerts, commands, identity issues."""
    c = _console(request)
    facts = c.fleet.get(store)
    if facts is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no store {store!r} has reported to this hub")
    now = datetime.now(timezone.utc)

    def read(db: Any) -> tuple:
        return (history.timeline(db, store, now), alerts.listing(db, store, resolved=True, limit=50),
                history.device_alerts(db, store), history.commands(db, store), history.identity(db, store),
                rollout_status.latest_word(db, store), desired.statuses(db, store))
    timeline, store_alerts, dev_alerts, cmds, ident, update, configs = await c.db.read(read)
    return store_detail(facts, c.fleet.summary(store), now, timeline=timeline, alerts=store_alerts,
                        device_alerts=dev_alerts, commands=cmds, identity=ident, update=update,
                        desired=_desired(configs[0]) if configs else None)


def _desired(st: desired.ConfigStatus) -> dict[str, Any]:
    """The hub's record of a store's devices.yaml: its newest version, and the store's word on the latest it
    answered about (state, errors, reason) with the versions it rolled back."""
    return {"desired": st.desired, "answered": st.answered, "state": st.state, "errors": st.errors[:20],
            "reason": st.reason, "rolled_back": [{"version": v, "reason": why} for v, why in st.rolled_back[-5:]]}


@router.get("/alerts", dependencies=[Depends(staff)])
async def get_alerts(request: Request, store: str | None = None, resolved: bool = False) -> list[dict[str, Any]]:
    """Live alerts (``resolved=true``: resolved ones too), newest first."""
    return await _console(request).db.read(lambda db: alerts.listing(db, store, resolved))


async def _staff_action(request: Request, alert_id: str, who: str, action: Any) -> dict[str, Any]:
    c = _console(request)
    try:
        row = await c.db.write(lambda tx: action(tx, alert_id, who, datetime.now(timezone.utc)))
    except CauseStillThere as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    c.broadcaster.publish(stores=(row["store"],), alerts=(row,))
    return row


@router.post("/alerts/{alert_id}/ack")
async def ack_alert(alert_id: str, request: Request, who: str = Depends(staff)) -> dict[str, Any]:
    """Take an alert: it stays until resolved, marked with who took it."""
    return await _staff_action(request, alert_id, who, alerts.acknowledge)


@router.post("/alerts/{alert_id}/resolve")
async def resolve_alert(alert_id: str, request: Request, who: str = Depends(staff)) -> dict[str, Any]:
    """Close an alert whose cause has cleared (409 while it is still there, unless it never clears by itself)."""
    present_ok = _console(request).rules.resolvable_while_present()
    return await _staff_action(request, alert_id, who,
                               lambda tx, aid, by, now: alerts.resolve(tx, aid, by, now, present_ok))


@router.post("/stores/{store}/commands", status_code=status.HTTP_202_ACCEPTED, dependencies=[Depends(staff)])
async def send_command(store: str, body: CommandRequest, request: Request) -> dict[str, Any]:
    """Send a remote action; 202 with the command (state ``sent``); its answer or timeout comes on the stream."""
    c = _console(request)
    facts = c.fleet.get(store)
    if facts is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no store {store!r} has reported to this hub")
    kind = offered = None
    if body.device != AGENT:
        found = [d for d in devices(facts.health) if d["id"] == body.device]
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {body.device!r} in {store}'s last snapshot")
        kind, offered = found[0]["kind"], found[0]["actions"]
    try:
        args = check(body.device, kind, body.action, body.args, offered)
    except ActionRefused as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(err)) from err
    try:
        return await c.desk.send(store, body.device, body.action, args)
    except ConnectionError as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err


@router.get("/commands/{cmd_id}", dependencies=[Depends(staff)])
async def get_command(cmd_id: str, request: Request) -> dict[str, Any]:
    """A command: ``sent``, then ``ok`` / ``error`` with the store's answer, or ``timeout``."""
    row = history.command_dict(await _console(request).db.read(lambda db: db.command(cmd_id)))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no command {cmd_id}")
    return row


@router.get("/rollouts", dependencies=[Depends(staff)])
async def get_rollouts(request: Request, id: str | None = Query(default=None, max_length=64),
                       limit: int = Query(default=20, ge=1, le=100)) -> dict[str, Any]:
    """Rollouts of releases, newest first (one with ``id``; 404 if there is none)."""
    views = await _console(request).db.read(lambda db: rollout_status.views(db, id, limit))
    if id is not None and not views:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rollout {id!r}")
    return {"now": iso_now(datetime.now(timezone.utc)), "rollouts": [v.as_dict() for v in views]}


async def _act_on_rollout(request: Request, rid: str, act: Callable[[Any], Any]) -> dict[str, Any]:
    """Run one of the operator's actions of rollout.py (``act(db)``: it opens its own transaction and keeps the
    action in ``rollout_actions``); the rollout as it is then."""
    def run(db: Any) -> dict[str, Any] | None:
        if not rollout_status.views(db, rid, 1):
            return None
        act(db)
        return rollout_status.views(db, rid, 1)[0].as_dict()
    try:
        # read() hands over the connection itself (write() would open a transaction around the action's own).
        view = await _console(request).db.read(run)
    except rollout.RolloutError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rollout {rid!r}")
    return {"now": iso_now(datetime.now(timezone.utc)), "rollout": view}


@router.post("/rollouts/{rid}/halt")
async def halt_rollout(request: Request, rid: str = Path(max_length=64),
                       who: str = Depends(staff)) -> dict[str, Any]:
    """Pause a running rollout where it is (no store is asked anything); resume carries on."""
    return await _act_on_rollout(request, rid, lambda db: rollout.halt(db, rid, who))


@router.post("/rollouts/{rid}/resume")
async def resume_rollout(request: Request, rid: str = Path(max_length=64),
                         who: str = Depends(staff)) -> dict[str, Any]:
    """Carry on a rollout halted by hand (409 for one that rolled back: that one is over)."""
    return await _act_on_rollout(request, rid, lambda db: rollout.resume(db, rid, who))


@router.post("/rollouts/{rid}/rollback")
async def rollback_rollout(request: Request, rid: str = Path(max_length=64),
                           who: str = Depends(staff)) -> dict[str, Any]:
    """Halt a rollout and ask every store it asked for its previous release (edge-hub run sends the messages)."""
    return await _act_on_rollout(request, rid, lambda db: rollout.rollback(db, rid, who))


@router.get("/stream", dependencies=[Depends(staff)])
async def stream(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``hello``, then ``update`` messages with what changed."""
    c = _console(request)

    def summaries(stores: set[str]) -> list[dict[str, Any]]:
        return [s for st in sorted(stores) if (s := c.fleet.summary(st)) is not None]
    hello = {"now": iso_now(datetime.now(timezone.utc)), "stores": len(c.fleet)}
    return StreamingResponse(c.broadcaster.events(hello, summaries), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
