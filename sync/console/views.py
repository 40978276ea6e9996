"""The JSON the console page reads, in one shape for the hub (every store) and the agent (its own).

The front end (static/) knows these shapes only: ``meta`` (who, what the
page may do), the fleet (``summarize`` per store plus live alerts) and a
store's detail (devices with the actions offered, raw snapshot, timeline,
alerts, device alerts, commands, the devices.yaml in force and its drift, the
release it runs, and on the hub its identity (issues and events kept aside),
the hub's desired version of its devices.yaml and its latest word on a rollout).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sync.console.commands import AGENT, LOG_LEVELS, actions_for
from sync.console.facts import StoreFacts, devices
from sync.console.rules import Condition, RuleSet


def iso_now(now: datetime) -> str:
    """The server's clock, which the page uses to turn times into ages."""
    return now.isoformat(timespec="milliseconds")


def meta(mode: str, who: str, version: str, command_timeout_s: float, rules: RuleSet,
         store: str | None = None) -> dict[str, Any]:
    """What the page needs to know before it shows anything."""
    return {
        "mode": mode,                   # "hub": every store; "store": the agent's own
        "store": store,
        "who": who,
        "version": version,
        "command_timeout_s": command_timeout_s,
        "log_levels": list(LOG_LEVELS),
        "agent_actions": actions_for(AGENT, None),
        "evaluate_every_s": rules.evaluate_every_s,
        "stale_after_s": rules.stale_after_s,
        "rules": [{"id": r.id, "kind": r.kind, "severity": r.severity, "for_s": r.for_s,
                   "auto_resolve": r.auto_resolve, "enabled": r.enabled,
                   "resolve_while_present": r.resolvable_while_present} for r in rules.rules],
    }


def device_list(facts: StoreFacts) -> list[dict[str, Any]]:
    """Every device of the last snapshot, with the actions the console offers for it."""
    return [{**d, "actions": actions_for(d["id"], d["actions"])} for d in devices(facts.health)]


def store_detail(facts: StoreFacts, summary: dict[str, Any], now: datetime, *, timeline: dict[str, Any],
                 alerts: list[dict[str, Any]], device_alerts: list[dict[str, Any]],
                 commands: list[dict[str, Any]], identity: dict[str, Any] | None = None,
                 update: dict[str, Any] | None = None, desired: dict[str, Any] | None = None) -> dict[str, Any]:
    """One store's page; ``identity``, ``update`` (its latest word on a rollout of a release:
    ``rollout, version, state, reason, running, at``) and ``desired`` (the hub's record of its devices.yaml:
    ``desired, answered, state, errors, reason, rolled_back``) only from the hub, None on the agent."""
    return {
        "now": iso_now(now),
        "summary": summary,
        # The devices.yaml version in force, its state and drift (facts.config), for the store's page.
        "config": summary.get("config"),
        # The hub's newest version of it and the store's word on the latest it answered about.
        "desired": desired,
        "devices": device_list(facts),
        "health": facts.health,
        "timeline": timeline,
        "alerts": alerts,
        "device_alerts": device_alerts,
        "commands": commands,
        "identity": identity,
        # The release it runs (the summary's version) and where it is with the latest rollout.
        "version": summary.get("version"),
        "update": update,
    }


def condition_alert(c: Condition) -> dict[str, Any]:
    """A firing condition in an alert's shape, for the agent's page (it raises nothing: the hub does)."""
    since = c.since.isoformat(timespec="milliseconds")
    return {"id": c.key, "store": c.store, "rule": c.rule, "subject": c.subject, "severity": c.severity,
            "title": c.title, "detail": c.detail, "since": since, "raised_at": since, "state": "open",
            "acked_by": None, "acked_at": None, "resolved_by": None, "resolved_at": None, "cleared_at": None,
            "updated_at": since, "active": True}
