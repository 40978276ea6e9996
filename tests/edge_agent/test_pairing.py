"""Pairing an associate's PAD or wristband: codes, tokens, revocation, the limits on wrong codes.

The rules with a real store (SQLite) and injected clocks: a code's shape and
its expiry, one code out per name, names that are taken, ``last_seen``
written at most once a minute, wrong codes per address and for the whole
store. Then a real agent at debug log level over real sockets: pair, use the
token (the API, the feed, tickets), a code good once, 5 wrong codes and 429,
revoke and 401 at once, a restart that keeps both, neither a code nor a
token in the log, and ``edge-agent pair`` against it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support.agent import TOKENS, AgentProcess, config_dict, free_port
from support.flows import poll

from edge_agent import pairing
from edge_agent.errors import Conflict, Forbidden, Invalid, NotFound, TooMany
from edge_agent.store import Store

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


class Clock:
    """A wall clock and a monotonic one that the test moves together."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def _reader():
    """OpenCV and numpy, the mirror extra's, which read the QR codes back (skipped without them)."""
    return pytest.importorskip("cv2", reason="OpenCV (the mirror extra) reads the QR codes back"), \
        pytest.importorskip("numpy")


def _decoded(modules) -> str:
    """What a QR code reader reads from ``modules`` (0 dark, 255 light), scaled up with a quiet zone."""
    cv2, np = _reader()
    image = cv2.resize(np.pad(modules, 4, constant_values=255), None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    # OpenCV's classic detector misses about one code in 150 of these (a pairing code drawn at random made
    # the test fail now and then); its ArUco-based detector read 300 of 300. A phone's reader is the judge.
    return cv2.QRCodeDetector().detectAndDecode(image)[0] or cv2.QRCodeDetectorAruco().detectAndDecode(image)[0]


def read_svg_qr(svg: str) -> str:
    """The text of an SVG QR code made of one path of unit squares (qrcode's SvgPathImage)."""
    np = _reader()[1]
    size = int(float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1)))
    modules = np.full((size, size), 255, np.uint8)
    for x, y in re.findall(r"M(\d+),(\d+)H", svg):
        modules[int(y), int(x)] = 0
    return _decoded(modules)


def read_terminal_qr(lines: list[str]) -> str:
    """The text of a QR code drawn in half blocks in black on white (edge_agent/qrcodes.py sets the colours
    itself, so any terminal shows it so): a glyph's filled half is a dark module."""
    np = _reader()[1]
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    modules = np.full((2 * len(plain), max(map(len, plain))), 255, np.uint8)
    for y, line in enumerate(plain):
        for x, char in enumerate(line):
            modules[2 * y, x] = 0 if char in "█▀" else 255
            modules[2 * y + 1, x] = 0 if char in "█▄" else 255
    return _decoded(modules)


def run(coro):
    return asyncio.run(coro)


async def _with_service(tmp_path: Path, test, clock: Clock | None = None, **kwargs):
    store = Store(tmp_path / "store.db")
    await store.start()
    clock = clock or Clock()
    service = pairing.Pairing(store, ["kiosk-1", "admin-1"], "Asia/Shanghai", clock=clock.wall,
                              monotonic=clock.monotonic, **kwargs)
    try:
        await service.load()
        return await test(service, clock, store)
    finally:
        await store.stop()


# The rules, with a real store ---------------------------------------------------------------------------


def test_a_code_is_eight_unmistakable_characters_kept_only_as_its_sha256(tmp_path):
    async def test(service, clock, store):
        made = await service.code("pad-anna", ["cosmetics", "cosmetics", "shoes"], "admin-1")
        assert re.fullmatch(r"[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}", made.code)
        assert not set(made.code) & set("01OIL")
        assert made.zones == ("cosmetics", "shoes") and made.ttl == 600
        assert made.expires_at == T0 + timedelta(minutes=10)
        rows = await store.read(lambda c: c.execute("SELECT code_sha256, name FROM pairing_codes").fetchall())
        assert rows == [(pairing.digest(pairing.normalize(made.code)), "pad-anna")]
        return made.code

    code = run(_with_service(tmp_path, test))
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("store.db"))
    assert pairing.normalize(code).encode() not in on_disk and code.encode() not in on_disk


def test_a_code_pairs_once_case_spaces_and_dash_ignored_and_the_token_is_kept_hashed(tmp_path):
    async def test(service, clock, store):
        made = await service.code("pad-anna", ["cosmetics"], "admin-1")
        typed = " " + made.code.lower().replace("-", " ") + " "
        done = await service.pair(typed, "10.0.0.5")
        assert done.client.name == "pad-anna" and done.client.zones == ("cosmetics",) and done.client.paired
        assert done.client.role.value == "associate" and len(done.token) >= 43
        assert service.client(pairing.digest(done.token)) == done.client
        with pytest.raises(pairing.PairingRefused, match="this pairing code was already used"):
            await service.pair(made.code, "10.0.0.5")
        stored = await store.read(lambda c: c.execute("SELECT token_sha256, paired_by FROM paired_clients").fetchone())
        assert stored == (pairing.digest(done.token), "admin-1")

    run(_with_service(tmp_path, test))


def test_an_expired_code_names_when_it_expired_in_the_store_time(tmp_path):
    async def test(service, clock, store):
        made = await service.code("pad-anna", [], "admin-1")
        clock.advance(599)
        kept = await service.code("pad-ben", [], "admin-1")
        clock.advance(1)
        with pytest.raises(Forbidden, match=r"this pairing code expired at 17:40; ask for a new one"):
            await service.pair(made.code, "10.0.0.5")  # 09:40 UTC is 17:40 in Asia/Shanghai
        assert (await service.pair(kept.code, "10.0.0.5")).client.name == "pad-ben"

    run(_with_service(tmp_path, test))


def test_names_that_are_taken_and_one_code_out_per_name(tmp_path):
    async def test(service, clock, store):
        with pytest.raises(Conflict, match="client of devices.yaml"):
            await service.code("kiosk-1", [], "admin-1")
        for bad in ("-pad", "pad\n", "Pad", "p" * 33):
            with pytest.raises(Invalid):
                await service.code(bad, [], "admin-1")
        first = await service.code("pad-anna", [], "admin-1")
        second = await service.code("pad-anna", ["shoes"], "admin-1")
        with pytest.raises(Forbidden, match="unknown pairing code"):
            await service.pair(first.code, "10.0.0.5")  # replaced by the second
        done = await service.pair(second.code, "10.0.0.5")
        with pytest.raises(Conflict, match="unpair it first"):
            await service.code("pad-anna", [], "admin-1")
        revoked = await service.revoke("pad-anna", "console-1")
        assert revoked["revoked_by"] == "console-1" and revoked["zones"] == ["shoes"]
        assert service.client(pairing.digest(done.token)) is None
        assert service.unpaired(pairing.digest(done.token)) == "pad-anna"
        again = await service.pair((await service.code("pad-anna", [], "admin-1")).code, "10.0.0.5")
        assert service.client(pairing.digest(again.token)).name == "pad-anna"
        assert service.client(pairing.digest(done.token)) is None  # the old token stays refused
        with pytest.raises(NotFound):
            await service.revoke("pad-nobody", "admin-1")
        # The name paired again keeps its earlier device's row: who unpaired it, and when.
        listed = await service.devices()
        assert [(d["name"], d["revoked_by"]) for d in listed] == [("pad-anna", "console-1"), ("pad-anna", None)]

    run(_with_service(tmp_path, test))


def test_unpairing_keeps_its_history_across_re_pairings_and_restarts(tmp_path):
    async def test(service, clock, store):
        tokens = []
        for i in range(3):
            tokens.append((await service.pair((await service.code("pad-anna", [f"z{i}"], "admin-1")).code,
                                              "10.0.0.5")).token)
            clock.advance(60)
            await service.revoke("pad-anna", f"admin-{i}")
        listed = await service.devices()
        assert [(d["zones"], d["revoked_by"]) for d in listed] == [(["z0"], "admin-0"), (["z1"], "admin-1"),
                                                                   (["z2"], "admin-2")]
        again = pairing.Pairing(store, ["kiosk-1"], clock=clock.wall, monotonic=clock.monotonic)
        await again.load()  # as after a restart: every earlier token is "unpaired", none admitted
        assert all(again.unpaired(pairing.digest(t)) == "pad-anna" and again.client(pairing.digest(t)) is None
                   for t in tokens)

    run(_with_service(tmp_path, test))


def test_unpairing_a_name_cancels_its_unused_codes(tmp_path):
    async def test(service, clock, store):
        code = await service.code("pad-anna", ["shoes"], "admin-1")
        gone = await service.revoke("pad-anna", "console-1")  # no device yet: its code is cancelled all the same
        assert gone["codes_cancelled"] == 1 and gone["paired_at"] is None and gone["zones"] == ["shoes"]
        with pytest.raises(Forbidden, match="unknown pairing code"):
            await service.pair(code.code, "10.0.0.5")
        with pytest.raises(NotFound):
            await service.revoke("pad-anna", "console-1")  # nothing left to do
        done = await service.pair((await service.code("pad-anna", [], "admin-1")).code, "10.0.0.5")
        await service.code("pad-ben", [], "admin-1")  # another name's code is left alone
        gone = await service.revoke("pad-anna", "console-1")
        assert gone["codes_cancelled"] == 0 and gone["revoked_by"] == "console-1"
        assert service.client(pairing.digest(done.token)) is None
        left = await store.read(lambda c: c.execute("SELECT name FROM pairing_codes WHERE used_at IS NULL").fetchall())
        assert left == [("pad-ben",)]

    run(_with_service(tmp_path, test))


def test_a_name_devices_yaml_took_since_is_no_paired_devices(tmp_path, caplog):
    async def test(service, clock, store):
        code = await service.code("pad-late", [], "admin-1")
        token = (await service.pair((await service.code("pad-anna", [], "admin-1")).code, "10.0.0.5")).token
        # devices.yaml now names clients pad-late and pad-anna (the agent restarted with it).
        after = pairing.Pairing(store, ["kiosk-1", "pad-late", "pad-anna"], clock=clock.wall,
                                monotonic=clock.monotonic)
        with caplog.at_level("WARNING", logger="edge_agent.pairing"):
            await after.load()
        assert after.client(pairing.digest(token)) is None  # not the devices.yaml client of that name
        said = [r.getMessage() for r in caplog.records if "not loaded" in r.getMessage()]
        assert len(said) == 1 and "pad-anna" in said[0]
        with pytest.raises(Conflict, match="client of devices.yaml now"):
            await after.pair(code.code, "10.0.0.5")
        assert after.attempts._pending == {}  # a name taken is no wrong code

    run(_with_service(tmp_path, test))


def test_the_demo_names_the_next_pad_no_device_has(tmp_path):
    async def test(service, clock, store):
        name = lambda: store.read(lambda c: pairing.free_name(c, "pad-demo-", ["pad-demo-2"]))  # noqa: E731
        assert await name() == "pad-demo-1"
        await service.pair((await service.code("pad-demo-1", [], "make run")).code, "10.0.0.5")
        assert await name() == "pad-demo-3"  # pad-demo-2 is a client of devices.yaml
        await service.revoke("pad-demo-1", "admin-1")
        assert await name() == "pad-demo-1"

    run(_with_service(tmp_path, test))


def test_last_seen_is_written_at_most_once_a_minute(tmp_path):
    async def seen(store):
        return await store.read(lambda c: c.execute("SELECT last_seen FROM paired_clients").fetchone()[0])

    async def settle(store):
        await store.write(lambda tx: None)  # the writer commits in order: last_seen's write went before

    async def test(service, clock, store):
        done = await service.pair((await service.code("pad-anna", [], "admin-1")).code, "10.0.0.5")
        h = pairing.digest(done.token)
        clock.advance(30)
        service.client(h)
        await settle(store)
        assert await seen(store) == T0.isoformat()  # paired 30 s ago: not yet
        clock.advance(30)
        service.client(h)
        await settle(store)
        assert await seen(store) == (T0 + timedelta(seconds=60)).isoformat()
        clock.advance(59)
        service.client(h)
        await settle(store)
        assert await seen(store) == (T0 + timedelta(seconds=60)).isoformat()

    run(_with_service(tmp_path, test))


def test_five_wrong_codes_lock_an_address_for_15_minutes():
    clock = Clock()
    attempts = pairing.Attempts(clock=clock.monotonic)
    for _ in range(5):
        attempts.check("10.0.0.5")
        attempts.wrong("10.0.0.5")
    with pytest.raises(TooMany) as locked:
        attempts.check("10.0.0.5")
    assert locked.value.retry_after == 900 and "5 wrong pairing codes" in str(locked.value)
    attempts.check("10.0.0.6")  # another address is not locked
    clock.advance(899)
    with pytest.raises(TooMany):
        attempts.check("10.0.0.5")
    clock.advance(1)
    attempts.check("10.0.0.5")
    attempts.wrong("10.0.0.5")
    attempts.right("10.0.0.5")  # a good code starts the count again
    for _ in range(4):
        attempts.wrong("10.0.0.5")
    attempts.check("10.0.0.5")


def test_addresses_that_rotate_are_held_by_the_store_wide_cap():
    clock = Clock()
    attempts = pairing.Attempts(clock=clock.monotonic)
    for i in range(60):
        attempts.check(f"10.1.{i // 250}.{i % 250}")
        attempts.wrong(f"10.1.{i // 250}.{i % 250}")
        clock.advance(0.5)  # 60 wrong codes in 30 s
    with pytest.raises(TooMany) as capped:
        attempts.check("10.9.9.9")
    assert capped.value.retry_after == 30 and "this minute" in str(capped.value)
    clock.advance(30)
    attempts.check("10.9.9.9")


def test_codes_in_flight_count_before_they_are_answered_and_a_late_wrong_one_keeps_the_lock():
    clock = Clock()
    attempts = pairing.Attempts(clock=clock.monotonic, per_minute=10**6)
    for _ in range(5):
        attempts.check("10.0.0.7")  # five let in together, none answered yet
    with pytest.raises(TooMany):
        attempts.check("10.0.0.7")  # a sixth is not let in while they are checked
    for _ in range(5):
        attempts.wrong("10.0.0.7")  # the fifth locks the address
    attempts.wrong("10.0.0.7")  # a wrong code answered after the lock began (never let in here): the lock stays
    with pytest.raises(TooMany) as locked:
        attempts.check("10.0.0.7")
    assert locked.value.retry_after == 900
    # A right code gives its reservation back, to the address and to the store's minute.
    store = pairing.Attempts(clock=clock.monotonic, per_minute=2)
    at = store.check("10.0.0.8")
    store.check("10.0.0.9")
    store.right("10.0.0.8", at)
    store.check("10.0.0.10")
    with pytest.raises(TooMany, match="this minute"):
        store.check("10.0.0.11")


def test_many_wrong_codes_at_once_from_one_address_are_not_all_tried(tmp_path):
    async def test(service, clock, store):
        async def one() -> int:
            try:
                await service.pair("ABCD-EFGH", "10.0.0.66")
            except pairing.PairingLocked:
                return 429
            except pairing.PairingRefused:
                return 403
            return 201

        answers = await asyncio.gather(*(one() for _ in range(200)))
        assert answers.count(403) == 5 and answers.count(429) == 195
        # the right code, even, is refused from there now; the reservations were all answered
        made = await service.code("pad-anna", [], "admin-1")
        with pytest.raises(pairing.PairingLocked):
            await service.pair(made.code, "10.0.0.66")
        assert service.attempts._pending == {}
        # the same code sent ten times at once pairs once
        done = await asyncio.gather(*(service.pair(made.code, f"10.0.1.{i}") for i in range(10)),
                                    return_exceptions=True)
        assert len([d for d in done if isinstance(d, pairing.Paired)]) == 1

    run(_with_service(tmp_path, test))


def test_wrong_codes_make_one_warning_line_a_minute(tmp_path, caplog):
    async def test(service, clock, store):
        with caplog.at_level("WARNING", logger="edge_agent.pairing"):
            for i in range(12):
                with pytest.raises(Forbidden):
                    await service.pair("ABCD-EFGH", f"10.0.3.{i}")
        lines = [r.getMessage() for r in caplog.records if "refused a code" in r.getMessage()]
        assert lines == ["pairing: refused a code from 10.0.3.0 (unknown pairing code; 1 in a row)"]

    run(_with_service(tmp_path, test))


def test_remembered_addresses_are_bounded():
    attempts = pairing.Attempts(kept=100, per_minute=10_000)
    for i in range(1000):
        attempts.wrong(f"10.2.{i // 250}.{i % 250}")
    assert len(attempts._wrong) == 100


# A real agent ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """One agent logging at debug: uvicorn logs every request line and WebSocket handshake."""
    agent = AgentProcess(tmp_path_factory.mktemp("pairing"), config_dict(free_port()), env={"EDGE_LOG_LEVEL": "debug"})
    agent.start()
    yield agent
    agent.close()


def _code(agent: AgentProcess, name: str, role: str = "admin", **body) -> dict:
    with agent.client(role) as http:
        answer = http.post("/v1/pairing", json={"name": name, **body})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.json()


def _pair(agent: AgentProcess, code: str, source: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=agent.url, timeout=30, transport=transport) as http:
        return http.post("/v1/pair", json={"code": code})


def _as(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_pair_then_use_the_token_on_the_api_the_feed_and_tickets(agent):
    made = _code(agent, "pad-anna", zones=["cosmetics"])
    assert made["name"] == "pad-anna" and made["zones"] == ["cosmetics"] and made["expires_in"] == 600
    assert made["pair_url"] == f"http://127.0.0.1:{agent.port}/pad#pair={made['code']}"
    assert made["qr_svg"].startswith("<svg") and read_svg_qr(made["qr_svg"]) == made["pair_url"]

    answer = _pair(agent, made["code"])
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    paired = answer.json()
    assert paired["name"] == "pad-anna" and paired["role"] == "associate" and paired["zones"] == ["cosmetics"]
    assert paired["store"] == {"id": "store-test", "name": "Test Store"}
    token = paired["token"]

    with httpx.Client(base_url=agent.url, timeout=30, headers=_as(token)) as http:
        assert http.get("/v1/orders").status_code == 200
        assert http.get("/v1/paired").status_code == 403  # an associate may not see the paired devices
        assert http.post("/v1/pairing", json={"name": "pad-evil"}).status_code == 403
        for purpose in ("events", "wristband"):
            ticket = http.post("/v1/tickets", json={"for": purpose})
            assert ticket.status_code == 201 and ticket.json()["for"] == purpose
        feed_ticket = http.post("/v1/tickets", json={"for": "events"}).json()["ticket"]
    with connect(f"{agent.ws_url}/v1/events", additional_headers=_as(token), open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    with connect(f"{agent.ws_url}/v1/events?ticket={feed_ticket}", open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"

    again = _pair(agent, made["code"])
    assert again.status_code == 403 and again.json()["detail"] == "this pairing code was already used; ask for a new one"

    with agent.client("console") as http:
        listed = {d["name"]: d for d in http.get("/v1/paired").json()}
    assert listed["pad-anna"]["paired_by"] == "admin-1" and listed["pad-anna"]["revoked_at"] is None
    assert listed["pad-anna"]["last_seen"] and "token" not in json.dumps(listed)


def test_who_may_make_codes_and_which_names(agent):
    with agent.client("associate") as http:
        assert http.post("/v1/pairing", json={"name": "pad-x"}).status_code == 403
    with agent.client("kiosk") as http:
        assert http.get("/v1/paired").status_code == 403
    with agent.client() as http:
        assert http.post("/v1/pairing", json={"name": "pad-x"}).status_code == 401
    with agent.client("console") as http:
        # A code makes an associate, who sees member ids in full: the console (masked ids) may not make one.
        refused = http.post("/v1/pairing", json={"name": "pad-x"})
        assert refused.status_code == 403, refused.text
        assert http.get("/v1/paired").status_code == 200
        assert http.delete("/v1/paired/pad-nobody").status_code == 404  # unpairing stays the console's
    with agent.client("admin") as http:
        assert http.post("/v1/pairing", json={"name": "kiosk-1"}).status_code == 409
        assert http.post("/v1/pairing", json={"name": "Pad X"}).status_code == 422
        assert http.post("/v1/pairing", json={"name": "p" * 33}).status_code == 422
        assert http.post("/v1/pairing", json={"name": "pad-x", "zones": ["x" * 33]}).status_code == 422
        assert http.post("/v1/pairing", json={"name": "pad-x", "zones": ["z"] * 33}).status_code == 422
        assert http.post("/v1/pairing", json={"name": "pad-x", "token": "mine"}).status_code == 422
    assert _pair(agent, "x" * 33).status_code == 422


def test_a_wristband_ticket_is_for_associates_and_admins(agent):
    for role, status in (("associate", 201), ("admin", 201), ("console", 403), ("kiosk", 403), ("mirror", 403)):
        with agent.client(role) as http:
            answer = http.post("/v1/tickets", json={"for": "wristband"})
        assert answer.status_code == status, (role, answer.text)
    with agent.client("associate") as http:
        assert http.post("/v1/tickets", json={"for": "wristband", "device": "band-1"}).status_code == 422


def test_a_forged_host_header_never_reaches_the_pair_url(agent):
    with agent.client("admin") as http:
        made = http.post("/v1/pairing", json={"name": "pad-host"}, headers={"Host": "evil.example/phish?"}).json()
        assert made["pair_url"] == f"http://127.0.0.1:{agent.port}/pad#pair={made['code']}"
        made = http.post("/v1/pairing", json={"name": "pad-host"}, headers={"Host": "store-7.lan:8443"}).json()
        assert made["pair_url"] == f"http://store-7.lan:8443/pad#pair={made['code']}"


def _closed_with(ws) -> int:
    """The close code of a connection the agent closes, after whatever it still sends."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_revoke_refuses_the_token_at_once_closes_its_streams_and_drops_its_tickets(agent):
    token = _pair(agent, _code(agent, "pad-gone", zones=["shoes"])["code"]).json()["token"]
    with httpx.Client(base_url=agent.url, timeout=30, headers=_as(token)) as http:
        assert http.get("/v1/orders").status_code == 200
        unspent = http.post("/v1/tickets", json={"for": "events"}).json()["ticket"]
        with connect(f"{agent.ws_url}/v1/events", additional_headers=_as(token), open_timeout=30) as feed, \
                connect(f"{agent.ws_url}/v1/wristband", additional_headers=_as(token), open_timeout=30) as band:
            assert json.loads(feed.recv(timeout=30))["type"] == "hello"
            assert json.loads(band.recv(timeout=30)) == {"type": "hello", "name": "pad-gone", "zones": ["shoes"]}
            unused = _code(agent, "pad-gone-2")["code"]
            with agent.client("console") as console:
                gone = console.delete("/v1/paired/pad-gone")
                assert gone.status_code == 200 and gone.json()["revoked_by"] == "console-1"
                assert gone.json()["codes_cancelled"] == 0
                cancelled = console.delete("/v1/paired/pad-gone-2")
                assert cancelled.status_code == 200 and cancelled.json()["codes_cancelled"] == 1
                assert cancelled.json()["paired_at"] is None
            assert _pair(agent, unused).status_code == 403
            assert _closed_with(feed) == 4401 and _closed_with(band) == 4401
        refused = http.get("/v1/orders")
        assert refused.status_code == 401 and refused.json()["detail"].startswith("this device was unpaired")
        assert http.post("/v1/tickets", json={"for": "events"}).status_code == 401
    for url, kwargs in ((f"{agent.ws_url}/v1/events?ticket={unspent}", {}),
                        (f"{agent.ws_url}/v1/events", {"additional_headers": _as(token)})):
        with connect(url, open_timeout=30, **kwargs) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "error"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with agent.client("admin") as http:
        assert http.delete("/v1/paired/pad-gone").status_code == 200  # again: unchanged
        assert [d["revoked_by"] for d in http.get("/v1/paired").json() if d["name"] == "pad-gone"] == ["console-1"]


def test_a_client_admitted_is_asked_again_after_its_connection_is_registered(tmp_path):
    """What the feed and the wristband stream ask once their connection is registered (auth.still_admitted):
    a device unpaired during its handshake, whose connections the unpairing closed before this one was there,
    is no longer admitted; a devices.yaml client always is."""
    from types import SimpleNamespace

    from edge_agent.api.auth import still_admitted

    async def test(service, clock, store):
        conn = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(pairing=service)))
        done = await service.pair((await service.code("pad-anna", [], "admin-1")).code, "10.0.0.5")
        assert still_admitted(conn, done.client)
        await service.revoke("pad-anna", "admin-1")
        assert not still_admitted(conn, done.client)
        again = await service.pair((await service.code("pad-anna", [], "admin-1")).code, "10.0.0.5")
        assert still_admitted(conn, again.client) and not still_admitted(conn, done.client)  # the old token stays out
        assert still_admitted(conn, pairing.ApiClient(name="kiosk-1", role="kiosk", token_sha256="0" * 64))

    run(_with_service(tmp_path, test))


def test_an_unpairing_during_the_handshake_leaves_no_stream_open(agent):
    """Unpair while handshakes of the device's feed and wristband arrive before, during and after it: every
    connection that got in is closed 4401, none stays open."""
    from websockets.asyncio.client import connect as connect_async

    async def outcome(path: str, token: str) -> str:
        try:
            async with connect_async(f"{agent.ws_url}{path}", additional_headers=_as(token), open_timeout=30) as ws:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)  # hello, or an error: then the close
        except ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else None}"
        except TimeoutError:
            return "still open"

    async def unpair(name: str) -> int:
        async with httpx.AsyncClient(base_url=agent.url, timeout=30, headers=_as(TOKENS["admin"])) as http:
            return (await http.delete(f"/v1/paired/{name}")).status_code

    async def race(name: str, token: str) -> list[str]:
        streams: list[asyncio.Task[str]] = []
        unpairing = asyncio.create_task(unpair(name))
        while not unpairing.done() or len(streams) < 10:  # handshakes arriving before, during and after it
            streams.append(asyncio.create_task(outcome(("/v1/events", "/v1/wristband")[len(streams) % 2], token)))
            await asyncio.sleep(0.002)
        assert unpairing.result() == 200
        return await asyncio.gather(*streams)

    for i in range(3):
        token = _pair(agent, _code(agent, f"pad-race-{i}")["code"]).json()["token"]
        results = run(race(f"pad-race-{i}", token))
        assert set(results) == {"closed 4401"}, sorted(results)


def test_five_wrong_codes_from_an_address_then_429_and_others_still_pair(agent):
    made = _code(agent, "pad-late")
    wrong = [_pair(agent, "ABCD-EFGH", source="127.0.0.2") for _ in range(5)]
    assert [r.status_code for r in wrong] == [403] * 5
    assert wrong[0].json()["detail"] == "unknown pairing code; check it, or ask for a new one"
    locked = _pair(agent, made["code"], source="127.0.0.2")  # even the right code, from there
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "900"
    assert _pair(agent, made["code"]).status_code == 201  # from another address


def test_a_forged_forwarded_for_header_changes_neither_the_limit_nor_the_log(tmp_path):
    """From 127.0.0.1, which a server trusting proxy headers would take as its proxy: its own agent (locked)."""
    agent = AgentProcess(tmp_path, config_dict(free_port()), env={"EDGE_LOG_LEVEL": "debug"})
    agent.start()
    try:
        with httpx.Client(base_url=agent.url, timeout=30) as http:
            answers = [http.post("/v1/pair", json={"code": "ABCD-EFGH"},
                                 headers={"X-Forwarded-For": f"10.66.0.{i}", "Forwarded": f"for=10.66.1.{i}"})
                       for i in range(6)]
        assert [a.status_code for a in answers] == [403] * 5 + [429]  # all from 127.0.0.1, whatever they said
        poll(agent.log, lambda log: log.count('127.0.0.1:') >= 6 and "refused a code from 127.0.0.1" in log,
             what="the six requests in the access log")
        assert "10.66." not in agent.log()
    finally:
        agent.close()


def test_neither_a_code_nor_a_token_reaches_the_log(agent):
    made = _code(agent, "pad-log")
    token = _pair(agent, made["code"]).json()["token"]
    with httpx.Client(base_url=agent.url, timeout=30, headers=_as(token)) as http:
        assert http.get("/v1/orders").status_code == 200
    with connect(f"{agent.ws_url}/v1/events", additional_headers=_as(token), open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    _pair(agent, made["code"])  # refused: logged as such
    poll(agent.log, lambda log: "pad-log paired from" in log and log.count("POST /v1/pair HTTP") >= 2,
         what="the pairing logged")
    log = agent.log()
    for secret in (made["code"], pairing.normalize(made["code"]), token):
        assert secret not in log


def test_edge_agent_pair_prints_the_code_the_url_and_a_qr(agent):
    env = {**os.environ, "EDGE_TOKEN": TOKENS["admin"]}
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "pair", "--url", agent.url, "--name", "pad-cli",
                           "--zones", "shoes,bags"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    code = re.search(r"Code\s+([2-9A-Z]{4}-[2-9A-Z]{4})", done.stdout).group(1)
    assert f"http://127.0.0.1:{agent.port}/pad#pair={code}" in done.stdout
    assert "pad-cli" in done.stdout and "shoes, bags" in done.stdout
    qr = [ln for ln in done.stdout.splitlines() if ln.startswith("\x1b[")]
    assert read_terminal_qr(qr) == f"http://127.0.0.1:{agent.port}/pad#pair={code}"
    assert _pair(agent, code).json()["zones"] == ["shoes", "bags"]

    taken = subprocess.run([sys.executable, "-m", "edge_agent.cli", "pair", "--url", agent.url, "--name", "pad-cli"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert taken.returncode == 1 and "409" in taken.stderr and "unpair it first" in taken.stderr
    no_token = subprocess.run([sys.executable, "-m", "edge_agent.cli", "pair", "--url", agent.url, "--name", "x"],
                              capture_output=True, text=True, env={k: v for k, v in env.items() if k != "EDGE_TOKEN"},
                              timeout=60)
    assert no_token.returncode == 2 and "EDGE_TOKEN" in no_token.stderr


def test_wrong_codes_sent_at_once_over_http_are_held_per_address_and_for_the_store(tmp_path):
    """A burst of concurrent wrong codes on real sockets: 5 tried from one address, the rest 429; then 16
    other addresses at once: never more than the store's 60 a minute tried in all."""
    agent = AgentProcess(tmp_path, config_dict(free_port()))
    agent.start()

    async def burst(n: int, source: str) -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address=source)
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=agent.url, transport=transport, limits=limits, timeout=60) as http:
            answers = await asyncio.gather(*(http.post("/v1/pair", json={"code": "ABCD-EFGH"}) for _ in range(n)))
        return [a.status_code for a in answers]

    async def many() -> list[list[int]]:
        return await asyncio.gather(*(burst(8, f"127.0.1.{i}") for i in range(1, 17)))

    try:
        one = run(burst(60, "127.0.0.9"))
        assert one.count(403) <= pairing.MAX_WRONG and one.count(403) + one.count(429) == 60, one
        everyone = [s for answers in run(many()) for s in answers]
        assert set(everyone) <= {403, 429}
        assert one.count(403) + everyone.count(403) <= pairing.STORE_WRONG_PER_MIN, everyone.count(403)
        assert everyone.count(429) >= 128 - (pairing.STORE_WRONG_PER_MIN - one.count(403))
    finally:
        agent.close()


def test_edge_agent_pair_sends_its_token_only_to_https_or_this_pc_and_follows_no_redirect():
    """http:// to another host is refused before anything is sent; an answer that redirects (here a loopback
    server answering 307 to another one) is not followed, so the token never reaches the address it names."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    env = {**os.environ, "EDGE_TOKEN": TOKENS["admin"]}

    def pair(url: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge_agent.cli", "pair", "--url", url, "--name", "pad-x"],
                              capture_output=True, text=True, env=env, timeout=60)

    for url in ("http://store-pc.example:8080", "http://192.0.2.1:8080", "ftp://127.0.0.1", "127.0.0.1:8080"):
        refused = pair(url)
        assert refused.returncode == 2 and "--url" in refused.stderr, (url, refused.stderr)
    assert "in clear" in pair("http://store-pc.example:8080").stderr

    seen: list[str | None] = []

    class Catcher(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    catcher = ThreadingHTTPServer(("127.0.0.1", 0), Catcher)

    class Redirector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{catcher.server_port}/v1/pairing")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (catcher, redirector)]
    for t in threads:
        t.start()
    try:
        done = pair(f"http://127.0.0.1:{redirector.server_port}")
    finally:
        for s in (catcher, redirector):
            s.shutdown()
            s.server_close()
    assert done.returncode == 1 and "307, a redirect" in done.stderr and "not followed" in done.stderr, done.stderr
    assert seen == []  # the token went nowhere else
    assert TOKENS["admin"] not in done.stderr + done.stdout


def test_a_restart_keeps_paired_devices_and_unpaired_ones(tmp_path):
    agent = AgentProcess(tmp_path, config_dict(free_port()))
    agent.start()
    try:
        kept = _pair(agent, _code(agent, "pad-kept")["code"]).json()["token"]
        dropped = _pair(agent, _code(agent, "pad-dropped")["code"]).json()["token"]
        with agent.client("admin") as http:
            assert http.delete("/v1/paired/pad-dropped").status_code == 200
        assert agent.stop() == 0
        agent.start()
        with httpx.Client(base_url=agent.url, timeout=30) as http:
            assert http.get("/v1/orders", headers=_as(kept)).status_code == 200
            refused = http.get("/v1/orders", headers=_as(dropped))
            assert refused.status_code == 401 and "unpaired" in refused.json()["detail"]
        with sqlite3.connect(agent.data_dir / "store.db") as db:
            hashes = {r[0] for r in db.execute("SELECT token_sha256 FROM paired_clients")}
        assert hashes == {pairing.digest(kept), pairing.digest(dropped)}
    finally:
        agent.close()
