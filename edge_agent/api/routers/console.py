"""``/console``: the health console page, limited to this store, for the store's own staff.

The same front end as ``edge-hub run --http`` (sync/console/static/, shared
with the reference hub through sync/console/ only: a store PC needs nothing
of the hub's package), fed by this agent: its devices and health snapshot,
the shipped alert rules applied to this store (shown, not raised: the hub
keeps alerts), every alert the store raised and has not cleared
(``agent.alerts``, edge_agent/health.py: one per device, code and subject,
as the hub keeps them), and a timeline built from the feed's ring of
``device.state`` events (this run of the agent, as far back as the ring
holds). Remote actions run here directly, through the downlink's one check
and dispatch of a command (``Downlink.check`` and ``run``, sync/downlink.py),
as a hub's command would. Live updates come from ``WS /v1/events``. Its meta
says ``pairing``: the page's "Devices for associates" view pairs and unpairs
this store's PADs and wristbands through the pairing router's own calls.

Roles: console and admin. The page shell needs no token (it holds no data).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.errors import Invalid, NotFound
from sync.console.commands import ActionRefused
from sync.console.facts import StoreFacts, summarize
from sync.console.page import PAGE_HEADERS, page, static_file
from sync.console.rules import RuleEngine, load_rules
from sync.console.timeline import changes, device_rows, segments
from sync.console.views import condition_alert, iso_now, meta, store_detail
from sync.downlink import CommandError, UnknownDevice

router = APIRouter(tags=["console"], route_class=StrictRoute)
staff = require(Role.CONSOLE, Role.ADMIN)
COMMAND_TIMEOUT_S = 30.0


class CommandRequest(BaseModel):
    """A remote action for one of this store's devices (or ``device: agent``)."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


def _state(request: Request) -> Any:
    """The console's per-app state, made on first use (the rules engine and recent commands)."""
    st = request.app.state
    if getattr(st, "console_engine", None) is None:
        st.console_engine = RuleEngine(load_rules())
        st.console_commands = []
    return st


@router.get("/console", response_class=HTMLResponse, include_in_schema=False)
async def console_page(request: Request) -> HTMLResponse:
    """The page shell; it asks for a console or admin token."""
    store = request.app.state.agent.config.store.id
    return HTMLResponse(page("store", "/console/api", "/console/static", f"{store} console"), headers=PAGE_HEADERS)


@router.get("/console/static/{name}", include_in_schema=False)
async def console_static(name: str) -> FileResponse:
    """The page's JS and CSS (only the files that ship: no path ever reaches the file system)."""
    path = static_file(name)
    if path is None:
        raise NotFound("no such file")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


def _store_alerts(agent: Any) -> tuple[dict[str, Any], ...]:
    """The store's alerts still raised (every label's, not one per device and code)."""
    return agent.alerts.list()


async def _facts(agent: Any, now: datetime) -> StoreFacts:
    if agent.link is not None:
        snap = await agent.link.health_snapshot()
    else:
        snap = {"version": agent.version, "devices": [d.as_dict() for d in agent.supervisor.snapshot()]}
    # "online": this agent is up and answering; the hub link's own state is in the summary's "hub".
    return StoreFacts(agent.config.store.id, "online", agent.started_at.isoformat(), agent.version, snap,
                      iso_now(now), _store_alerts(agent))


def _summary(agent: Any, facts: StoreFacts) -> dict[str, Any]:
    link = agent.link
    return {**summarize(facts), "hub": "online" if agent.hub_online else "offline",
            "hub_error": getattr(link, "last_error", None)}


def _alerts(request: Request, facts: StoreFacts, now: datetime) -> list[dict[str, Any]]:
    return [condition_alert(c) for c in _state(request).console_engine.evaluate([facts], now).firing]


def _timeline(agent: Any, facts: StoreFacts, now: datetime) -> dict[str, Any]:
    """Each device's states from the feed's ring of device.state events, then its state now."""
    start = iso_now(now - timedelta(hours=24))
    rows = [r for e in agent.feed.ring if e.type == "device.state"
            for r in device_rows(facts.store, {"devices": [e.data]})]
    rows += device_rows(facts.store, facts.health or {})
    return {"from": start, "to": iso_now(now), "devices": segments(changes(rows), start)}


@router.get("/console/api/meta")
async def console_meta(request: Request, client: ClientConfig = Depends(staff)) -> dict[str, Any]:
    """Who is asking and what the page may do."""
    agent = request.app.state.agent
    # "pairing": this page may pair the store's associates' devices (POST /v1/pairing, GET and DELETE /v1/paired,
    # edge_agent/api/routers/pairing.py, same roles); the hub's meta has no such key: it cannot pair a store's device.
    return {**meta("store", client.name, agent.version, COMMAND_TIMEOUT_S, _state(request).console_engine.rules,
                   store=agent.config.store.id), "pairing": True}


@router.get("/console/api/fleet", dependencies=[Depends(staff)])
async def console_fleet(request: Request) -> dict[str, Any]:
    """This store as the hub's fleet view would show it, with the rules' alerts."""
    agent, now = request.app.state.agent, datetime.now(timezone.utc)
    facts = await _facts(agent, now)
    return {"now": iso_now(now), "stores": [_summary(agent, facts)], "alerts": _alerts(request, facts, now)}


def _own(request: Request, store: str) -> Any:
    agent = request.app.state.agent
    if store != agent.config.store.id:
        raise NotFound(f"this agent is store {agent.config.store.id}, not {store}")
    return agent


@router.get("/console/api/stores/{store}", dependencies=[Depends(staff)])
async def console_store(store: str, request: Request) -> dict[str, Any]:
    """This store's page: devices, snapshot, timeline, alerts, commands sent from here."""
    agent, now = _own(request, store), datetime.now(timezone.utc)
    facts = await _facts(agent, now)
    return store_detail(facts, _summary(agent, facts), now, timeline=_timeline(agent, facts, now),
                        alerts=_alerts(request, facts, now), device_alerts=list(_store_alerts(agent)),
                        commands=list(reversed(_state(request).console_commands)))


@router.post("/console/api/stores/{store}/commands", dependencies=[Depends(staff)])
async def console_command(store: str, body: CommandRequest, request: Request) -> dict[str, Any]:
    """Run an action now and answer with its outcome (``ok``, ``error`` or ``timeout``)."""
    agent = _own(request, store)
    try:
        args = agent.downlink.check(body.device, body.action, body.args)
    except UnknownDevice as err:
        raise NotFound(str(err)) from err
    except ActionRefused as err:
        raise Invalid(str(err)) from err
    row: dict[str, Any] = {"id": str(uuid4()), "store": store, "device": body.device, "action": body.action,
                           "args": args, "sent_at": iso_now(datetime.now(timezone.utc)), "timeout_s": COMMAND_TIMEOUT_S}
    try:
        # The one dispatch of a command, the hub's too (sync/downlink.py): it checks again, as on the wire.
        result = await asyncio.wait_for(agent.downlink.run(body.device, body.action, args), COMMAND_TIMEOUT_S)
        row.update(state="ok", result=result)
    except TimeoutError:
        row.update(state="timeout", error=f"no answer within {COMMAND_TIMEOUT_S:g} s")
    except CommandError as err:
        row.update(state="error", error=str(err))
    except Exception as err:  # noqa: BLE001 - a driver's failure is the answer, as on the hub's cmd/res
        row.update(state="error", error=f"{type(err).__name__}: {err}")
    row["answered_at"] = iso_now(datetime.now(timezone.utc))
    commands = _state(request).console_commands
    commands.append(row)
    del commands[:-20]  # the page shows the last 20
    return row
