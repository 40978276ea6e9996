"""ConfigApply inside a real agent (store, supervisor, devices; no hub), with the rollback window's timer
injected: the test says when the window ends, nothing waits for it to pass."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from support.agent import config_dict, free_port
from support.printer import printer_device

from edge_agent.agent import Agent
from edge_agent.config import parse
from edge_agent.config_apply import ConfigApply
from sync import topics

HEARTBEAT = {"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.2}


class Window:
    """An injected ``sleep`` for the rollback window: it ends when the test says so."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._end = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._end.wait()

    def end(self) -> None:
        self._end.set()


def desired(version: int, cfg: dict) -> topics.DesiredConfig:
    text = yaml.safe_dump(cfg)
    return topics.DesiredConfig(version=version, sha256=topics.config_sha256(text), yaml=text, by="test")


async def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.02)  # polling interval of a condition
    return value


def run(tmp_path: Path, body: Callable[[Agent, Window, dict], Awaitable[None]]) -> None:
    cfg = config_dict(free_port(), [dict(HEARTBEAT)], store_id="store-apply")
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(cfg))

    async def main() -> None:
        agent = Agent(parse(path.read_text()), tmp_path / "data", config_path=path)
        window = Window()
        agent.configs = ConfigApply(agent, path, sleep=window)
        await agent.start()
        try:
            await until("heartbeat-1 online", lambda: agent.supervisor.snapshot()[0].state.value == "online")
            await body(agent, window, cfg)
        finally:
            window.end()
            await agent.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def devices(agent: Agent) -> dict[str, Any]:
    return {s.id: s for s in agent.supervisor.snapshot()}


def test_a_device_offline_when_the_window_ends_sends_the_agent_back_to_the_last_good_version(tmp_path):
    async def body(agent: Agent, window: Window, cfg: dict) -> None:
        original = agent.configs.path.read_text()
        new = copy.deepcopy(cfg)
        new["fleet"] = {"rollback_after_s": 120}
        new["devices"].append(printer_device(free_port(), id="printer-9", station="kiosk-1"))
        res = await agent.configs.apply(desired(1, new))
        assert res.state == "applied" and agent.configs.status()["version"] == 1
        assert "printer-9" in agent.printing.printers  # the print queue knows the new printer
        await until("the window asked for", lambda: window.asked)
        assert window.asked == [120]
        await until("printer-9 offline", lambda: devices(agent)["printer-9"].state.value == "offline")
        since = devices(agent)["heartbeat-1"].since
        window.end()
        await until("rolled back", lambda: agent.configs.state == "rolled_back")
        assert "printer-9" not in devices(agent) and "printer-9" not in agent.printing.printers
        assert devices(agent)["heartbeat-1"].since == since  # untouched both ways
        assert agent.configs.path.read_text() == original
        last = agent.configs.last_result
        assert (last.version, last.ok, last.state, last.in_force.version) == (1, False, "rolled_back", 0)
        assert last.reason.startswith("printer-9 (printer.escpos) is offline")
        assert "120 s after version 1 was applied" in last.reason
        status = agent.configs.status()
        assert (status["version"], status["drift"], status["state"]) == (0, False, "rolled_back")
        # The state outlives a restart: the rolled back version is not taken again.
        saved = json.loads((agent.data_dir / "config" / "state.json").read_text())
        assert (saved["seen"], saved["version"]) == (1, 0)
        assert await agent.configs.apply(desired(1, new)) is None

    run(tmp_path, body)


def test_a_version_whose_devices_are_up_stays_and_a_local_edit_is_drift(tmp_path):
    async def body(agent: Agent, window: Window, cfg: dict) -> None:
        new = copy.deepcopy(cfg)
        new["devices"].append({"id": "heartbeat-2", "kind": "sensor.heartbeat", "interval": 0.2})
        assert (await agent.configs.apply(desired(1, new))).state == "applied"
        await until("heartbeat-2 online", lambda: devices(agent).get("heartbeat-2") and
                    devices(agent)["heartbeat-2"].state.value == "online")
        window.end()
        await until("the watch done", lambda: agent.configs._watch.done())
        assert agent.configs.state == "applied" and agent.configs.status()["drift"] is False
        with agent.configs.path.open("a") as f:
            f.write("# a local edit\n")
        assert agent.configs.status()["drift"] is True
        from edge_agent.health import assess

        a = await assess(agent)
        assert [r["code"] for r in a["reasons"] if r["code"] == "config_drift"] == ["config_drift"]
        assert a["config"]["drift"] is True
        # A warning: drift alone leaves the store ok.
        assert a["status"] == "ok" or any(r["code"] != "config_drift" for r in a["reasons"])

    run(tmp_path, body)


def test_a_refused_version_changes_nothing_and_names_its_lines(tmp_path):
    async def body(agent: Agent, window: Window, cfg: dict) -> None:
        original = agent.configs.path.read_text()
        other = copy.deepcopy(cfg)
        other["store"]["id"] = "store-other"
        res = await agent.configs.apply(desired(1, other))
        assert res.state == "refused" and not res.ok
        assert any(e.startswith("devices.yaml (hub version 1):") and "store.id 'store-other'" in e for e in res.errors)
        bad = copy.deepcopy(cfg)
        bad["fleet"] = {"rollback_after_s": 0}
        res = await agent.configs.apply(desired(2, bad))
        assert res.state == "refused" and "fleet.rollback_after_s is too small" in res.errors[0]
        assert agent.configs.path.read_text() == original and agent.configs.version == 0
        assert not (agent.data_dir / "config" / "incoming.yaml").exists()

    run(tmp_path, body)


def test_a_linked_config_is_replaced_at_its_target_and_stays_a_link(tmp_path):
    # /etc/edge-agent is read-only to the agent under systemd: the hub's versions land where the link points.
    from edge_agent.config_apply import _atomic_write

    state = tmp_path / "var" / "config"
    state.mkdir(parents=True)
    target = state / "devices.yaml"
    target.write_text("old\n", encoding="utf-8")
    etc = tmp_path / "etc"
    etc.mkdir()
    link = etc / "devices.yaml"
    link.symlink_to(target)
    _atomic_write(link, "new\n")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text(encoding="utf-8") == "new\n"
    assert sorted(p.name for p in etc.iterdir()) == ["devices.yaml"]
