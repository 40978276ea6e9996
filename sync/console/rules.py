"""Alert rules as data (rules.yaml) and their evaluation, with no I/O.

A rule names a ``kind`` of condition and its limits; ``RuleEngine`` looks at
every store's facts and returns the conditions that have held for the rule's
``for_s``. When the data says when a condition began (a device's ``since``,
the store's offline status, the oldest non-compliant label) that is its
start; otherwise it is the first evaluation that saw it. A store that is
offline, or whose snapshots stopped (``stale_after_s``), is *held*: its last
snapshot is old news, so its device alerts are neither raised nor cleared
until it reports again; only store-level rules judge it meanwhile.

Two kinds look past the devices. ``store_identity`` raises what the hub
noticed about a store's identity (its ``identity`` table: a stream conflict,
a database restored or copied, two agents running as the store); those come
from the hub's own database, so they are judged even while the store is held.
``store_reason`` raises the reasons the store itself gives for ``degraded``
(its hub link in trouble, ...), read from its last snapshot.

The same engine runs on the agent (``/console``) over its own store. A rules
file that cannot be used is a ``RulesError`` saying ``FILE: what``; the hub
reports it as its ConsoleConfigError (its loader, sync/hub/console/rules.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sync.console.facts import (StoreFacts, devices, identity_problem, labels, number, parse_time, printing,
                                reasons, store_alerts)

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
Severity = Literal["info", "warning", "critical"]
# (subject, since or None, detail, values for the title)
Found = tuple[str, datetime | None, str, dict[str, Any]]


class RulesError(ValueError):
    """A rules file that cannot be read or does not validate; the message starts with the file's path."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule's condition holding for one subject of one store, past its ``for_s``."""

    store: str
    rule: str
    subject: str
    severity: str
    title: str
    detail: str
    since: datetime
    auto_resolve: bool

    @property
    def key(self) -> str:
        """``store/rule/subject``: one live alert per key."""
        return f"{self.store}/{self.rule}/{self.subject}"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_level: ClassVar[bool] = False  # judged even while the store is held
    default_title: ClassVar[str] = "{subject}"

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    severity: Severity = "warning"
    for_s: float = Field(0, ge=0, le=86400, description="how long the condition must hold")
    auto_resolve: bool = Field(False, description="resolve by itself when the cause clears (else staff resolve it)")
    title: str | None = Field(None, max_length=200, description="format string: {store}, {subject} and the kind's own")
    enabled: bool = True

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        raise NotImplementedError

    @property
    def resolvable_while_present(self) -> bool:
        """Staff may resolve its alert while the cause is still there (a cause that never clears by itself)."""
        return False

    def render_title(self, values: dict[str, Any]) -> str:
        try:
            return (self.title or self.default_title).format_map(values)[:200]
        except (KeyError, ValueError, IndexError):
            return self.default_title.format_map(values)[:200]


def plural(n: int, word: str) -> str:
    """``word`` for one, ``word + "s"`` for any other count."""
    return word if n == 1 else f"{word}s"


def _offset(f: StoreFacts) -> timedelta:
    """The store's clock error (hub minus store) from its snapshot; zero when unknown."""
    off = number((f.health or {}).get("clock_offset_s"))
    return timedelta(seconds=off or 0.0)


class DeviceStateRule(_Rule):
    """A device in one of ``states`` (its ``since`` is the start)."""

    kind: Literal["device_state"]
    states: list[str] = Field(default_factory=lambda: ["offline", "error"], min_length=1)
    device_kinds: list[str] = Field(default_factory=list, description="fnmatch patterns; empty: every kind")
    default_title: ClassVar[str] = "{subject} {state}"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        for d in devices(f.health):
            if d["state"] not in self.states:
                continue
            if self.device_kinds and not any(fnmatch.fnmatchcase(d["kind"] or "", p) for p in self.device_kinds):
                continue
            since = parse_time(d["since"])
            detail = f"{d['id']} ({d['kind'] or '?'}) is {d['state']}" + (f": {d['last_error']}" if d["last_error"] else "")
            yield d["id"], since + _offset(f) if since else None, detail, {"state": d["state"], "kind": d["kind"]}


class DeviceAlertRule(_Rule):
    """A ``retail.device.alert`` the store raised and has not cleared (paper out, ...)."""

    kind: Literal["device_alert"]
    codes: list[str] = Field(min_length=1, description="fnmatch patterns of alert codes")
    severities: list[str] = Field(default_factory=list, description="the store's severities; empty: any")
    default_title: ClassVar[str] = "{subject}: {code}"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        seen: set[str] = set()
        for a in store_alerts(f):
            code = str(a.get("code") or "")
            if not any(fnmatch.fnmatchcase(code, p) for p in self.codes):
                continue
            if self.severities and a.get("severity") not in self.severities:
                continue
            subject = str(a.get("device") or "?")
            if subject in seen:
                continue  # two codes of one device under one rule: one alert (its key is store/rule/subject)
            seen.add(subject)
            since = parse_time(a.get("time"))
            detail = str(a.get("message") or code)
            yield subject, since + _offset(f) if since else None, detail, {"code": code}


class LabelsRule(_Rule):
    """At least ``min_count`` shelf labels showing another price than the checkout past their grace.

    The agent reports ``past_grace`` (labels whose own grace time ran out: a label being
    updated after a price change is not counted); from an agent too old to report it, every
    non-compliant label counts.
    """

    kind: Literal["labels_non_compliant"]
    min_count: int = Field(1, ge=1)
    default_title: ClassVar[str] = "{labels} not compliant"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        lab = labels(f.health) or {}
        past = lab.get("past_grace")
        n = int((past if past is not None else lab.get("non_compliant")) or 0)
        if n >= self.min_count:
            oldest = lab.get("oldest_past_grace_since" if past is not None else "oldest_non_compliant_since")
            since = parse_time(oldest)
            total = int(lab.get("labels") or 0)
            yield "labels", since + _offset(f) if since else None, \
                f"{n} of {total} shelf {plural(total, 'label')} {'shows' if n == 1 else 'show'} another price " \
                "than the checkout", {"count": n, "labels": f"{n} shelf {plural(n, 'label')}"}


class OutboxRule(_Rule):
    """The outbox is not draining: its oldest event waits past ``max_age_s``, or it holds over ``max_depth``."""

    kind: Literal["outbox_growing"]
    max_age_s: float | None = Field(600, gt=0)
    max_depth: int | None = Field(None, gt=0)
    unless_reasons: list[str] = Field(default_factory=list, description="fnmatch patterns of the store's reason "
                                      "codes that already say why (a store_reason rule raises those)")
    default_title: ClassVar[str] = "outbox not draining ({events})"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        h = f.health or {}
        if self.unless_reasons and any(fnmatch.fnmatchcase(r["code"], p) for r in reasons(f.health)
                                       for p in self.unless_reasons):
            return  # the store says why its outbox does not drain: that reason's alert covers it
        age, depth = number(h.get("oldest_unacked_age_s")), number(h.get("outbox_depth"))
        n = int(depth or 0)
        values = {"depth": n, "age": int(age or 0), "events": f"{n} {plural(n, 'event')}"}
        if self.max_age_s is not None and age is not None and age > self.max_age_s:
            snap_at = parse_time(f.health_at) or now
            yield "outbox", snap_at - timedelta(seconds=age - self.max_age_s), \
                f"oldest unacknowledged event waits {age:.0f} s (limit {self.max_age_s:g} s)", values
        elif self.max_depth is not None and depth is not None and depth > self.max_depth:
            yield "outbox", None, f"{depth:.0f} events wait for the hub (limit {self.max_depth})", values


class StoreOfflineRule(_Rule):
    """The store's status is offline (its Will), or its snapshots stopped coming."""

    kind: Literal["store_offline"]
    store_level: ClassVar[bool] = True
    default_title: ClassVar[str] = "store {how}"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        if f.presence == "offline":
            yield "store", parse_time(f.presence_since), "the store's agent is not connected to the hub", \
                {"how": "offline"}
            return
        at = parse_time(f.health_at)
        if f.presence == "online" and at is not None and (now - at).total_seconds() > stale_after_s:
            yield "store", at + timedelta(seconds=stale_after_s), \
                f"no health snapshot since {at.isoformat(timespec='seconds')}", {"how": "silent"}


class ClockSkewRule(_Rule):
    """The store's clock is off the hub's by more than ``max_offset_s``."""

    kind: Literal["clock_skew"]
    max_offset_s: float = Field(5.0, gt=0)
    default_title: ClassVar[str] = "clock off by {offset} s"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        off = number((f.health or {}).get("clock_offset_s"))
        if off is not None and abs(off) > self.max_offset_s:
            behind = "behind" if off > 0 else "ahead of"
            yield "clock", None, f"the store's clock is {abs(off):.1f} s {behind} the hub's", {"offset": f"{off:+.1f}"}


class PrintQueueRule(_Rule):
    """Print jobs failed (over ``max_failed``) or waiting (over ``max_waiting``)."""

    kind: Literal["print_queue"]
    max_failed: int = Field(0, ge=0)
    max_waiting: int | None = Field(None, ge=0)
    default_title: ClassVar[str] = "print queue: {failed} failed, {waiting} waiting"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        p = printing(f.health)
        if p is None:
            return
        failed, waiting = p["failed"], p["waiting"]
        if failed > self.max_failed or (self.max_waiting is not None and waiting > self.max_waiting):
            since = parse_time(p.get("oldest_waiting_since"))
            yield "printing", since + _offset(f) if since else None, \
                f"{failed} failed and {waiting} waiting print {plural(failed + waiting, 'job')}, {p['queued']} queued", \
                {"failed": failed, "waiting": waiting}


class StoreIdentityRule(_Rule):
    """An identity issue the hub noticed about the store and has not cleared (db.py ``identity``).

    One alert per code and subject (``code/subject``, the stream or the store). ``stream_conflict``
    and ``database_restored`` never clear by themselves: under a rule without ``auto_resolve``,
    staff resolve the alert once they have looked, and it comes back only if the hub sees the
    issue again afterwards. ``duplicate_store`` clears when the hub stops seeing two agents.
    """

    kind: Literal["store_identity"]
    store_level: ClassVar[bool] = True  # the hub's own knowledge, not the store's snapshot
    codes: list[str] = Field(min_length=1, description='identity codes; "*" for all')
    default_title: ClassVar[str] = "{problem}"

    @property
    def resolvable_while_present(self) -> bool:
        return not self.auto_resolve

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        for i in f.identity:
            code = str(i.get("code") or "")
            if "*" not in self.codes and code not in self.codes:
                continue
            last, handled = parse_time(i.get("last_at")), parse_time(i.get("handled_at"))
            if not self.auto_resolve and handled is not None and (last is None or handled >= last):
                continue  # staff resolved it after the hub last saw it: seen, nothing new since
            subject = f"{code}/{i.get('subject') or ''}"
            count = int(number(i.get("count")) or 1)
            detail = str(i.get("detail") or code) + (f" (seen {count} times)" if count > 1 else "")
            yield subject, parse_time(i.get("first_at")), detail, {"problem": identity_problem(code), "code": code,
                                                                   "count": count}


# What each reason code of the store's hub link means, for a title.
REASON_WORDS = {
    "hub_not_acknowledging": "hub not acknowledging the store's events",
    "hub_ack_invalid": "hub acknowledgements the store cannot accept",
    "hub_publish_refused": "broker refuses the store's events",
    "mqtt_session_taken_over": "MQTT session taken over by another client",
    "outbox_unreadable": "store cannot send its outbox",
    "duplicate_store": "two agents run as this store",
    "hub_offline": "store not connected to the hub",
    "cert_expiring": "a certificate of the store ends soon",
    "cert_expired": "a certificate of the store has ended",
}


class StoreReasonRule(_Rule):
    """A reason the store gives for ``degraded`` in its last snapshot (``reasons[].code``), one alert per code.

    A reason the hub also knows as an open identity issue of the store (``duplicate_store``)
    is left to the store_identity rule: one alert for one cause.
    """

    kind: Literal["store_reason"]
    codes: list[str] = Field(min_length=1, description="fnmatch patterns of reason codes")
    default_title: ClassVar[str] = "{what}"

    def find(self, f: StoreFacts, now: datetime, stale_after_s: float) -> Iterator[Found]:
        known = {str(i.get("code")) for i in f.identity}
        messages: dict[str, list[str]] = {}
        for r in reasons(f.health):
            if r["code"] in known or not any(fnmatch.fnmatchcase(r["code"], p) for p in self.codes):
                continue
            messages.setdefault(r["code"], []).append(r["message"] or r["code"])
        for code, texts in sorted(messages.items()):
            yield code, None, "; ".join(dict.fromkeys(texts)), {"what": REASON_WORDS.get(code, code.replace("_", " ")),
                                                                "code": code}


Rule = Annotated[Union[DeviceStateRule, DeviceAlertRule, LabelsRule, OutboxRule, StoreOfflineRule, ClockSkewRule,
                       PrintQueueRule, StoreIdentityRule, StoreReasonRule], Field(discriminator="kind")]


class RuleSet(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid")

    # At most 10 s: a condition must be seen (and raised) within 60 s of its cause.
    evaluate_every_s: float = Field(5.0, gt=0, le=10)
    stale_after_s: float = Field(180.0, gt=0, description="no snapshot for this long: the store is held")
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "RuleSet":
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(dup)}")
        return self

    def resolvable_while_present(self) -> frozenset[str]:
        """Ids of the rules whose alerts staff may resolve while the cause is still there."""
        return frozenset(r.id for r in self.rules if r.resolvable_while_present)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The rules of a YAML file (the shipped rules.yaml by default); RulesError says what is wrong."""
    path = Path(path) if path else DEFAULT_RULES
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise RulesError(f"{path}: cannot read the alert rules: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise RulesError(f"{path}: not YAML: {err}") from err
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in err.errors())
        raise RulesError(f"{path}: {problems}") from err


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one pass found: conditions past their ``for_s``, and the stores held (offline or silent)."""

    firing: list[Condition]
    held: frozenset[str]
    pending: int  # conditions seen but not yet past their for_s


class RuleEngine:
    """Evaluates a RuleSet; remembers when it first saw conditions whose data has no start time."""

    def __init__(self, rules: RuleSet):
        self.rules = rules
        self._first_seen: dict[str, datetime] = {}

    def held(self, f: StoreFacts, now: datetime) -> bool:
        """True when the store's snapshot is old news: offline, or silent past ``stale_after_s``."""
        if f.presence == "offline":
            return True
        at = parse_time(f.health_at)
        return at is not None and (now - at).total_seconds() > self.rules.stale_after_s

    def evaluate(self, facts: Iterable[StoreFacts], now: datetime) -> Evaluation:
        """Every condition holding now, past its rule's ``for_s``."""
        firing: list[Condition] = []
        held: set[str] = set()
        seen: set[str] = set()
        pending = 0
        for f in facts:
            is_held = self.held(f, now)
            if is_held:
                held.add(f.store)
            for rule in self.rules.rules:
                if not rule.enabled or (is_held and not rule.store_level):
                    continue
                for subject, since, detail, values in rule.find(f, now, self.rules.stale_after_s):
                    key = f"{f.store}/{rule.id}/{subject}"
                    seen.add(key)
                    start = min(since, now) if since else self._first_seen.setdefault(key, now)
                    if (now - start).total_seconds() < rule.for_s:
                        pending += 1
                        continue
                    title = rule.render_title({"store": f.store, "subject": subject, **values})
                    firing.append(Condition(f.store, rule.id, subject, rule.severity, title, detail[:1000], start,
                                            rule.auto_resolve))
        # Forget what went away, except in held stores: their conditions are frozen, not gone.
        self._first_seen = {k: v for k, v in self._first_seen.items() if k in seen or k.split("/", 1)[0] in held}
        return Evaluation(firing, frozenset(held), pending)
