"""The link's resend when the hub says nothing: after ``resend_after_s``, then twice as long each time,
up to ``resend_max_s``; an ack starts the count again. A real store, a real link and a real Mosquitto
with nobody acknowledging (the hub down, the broker up); the times are lower bounds only (a loaded
machine can only make a resend later)."""

from __future__ import annotations

import asyncio
import json
import time

from support.hubclient import HubClient

from edge_agent import config as agent_config
from edge_agent.bus import EventBus
from edge_agent.store import Store
from edge_agent.store.link_outbox import StoreOutbox, hub_settings
from sync.link import HubLink, LinkSettings

STORE = "store-backoff"
SETTINGS = LinkSettings(resend_after_s=1.0, resend_max_s=4.0)


POLL_SLACK = 0.05  # the counter is polled every 10 ms: a resend is noticed up to that late (and the loop's tick)


def test_resends_back_off_while_the_hub_is_silent_and_start_again_after_an_ack(tmp_path, mosquitto):
    hub = HubClient(mosquitto.port, STORE)
    cfg = agent_config.parse(f"store:\n  id: {STORE}\n  name: Backoff\nhub:\n  url: {mosquitto.url}\n", "t.yaml", {})
    resent_at: list[float] = []

    async def scenario() -> None:
        store = Store(tmp_path / "store.db")
        await store.start()
        link = HubLink(hub_settings(cfg), StoreOutbox(store), EventBus(), "t", tmp_path, settings=SETTINGS)
        await link.start()
        try:
            for i in range(3):
                await store.emit("retail.stock.adjusted", {"sku": f"S{i}", "delta": 1})
            seen = 0

            async def resends(n: int) -> None:
                """Until the link has resent ``n`` times, noting when each resend came."""
                nonlocal seen
                async with asyncio.timeout(120):  # a hang's bound, far above the 1 + 2 + 4 + 4 s expected
                    while seen < n:
                        if link.stats["resends"] > seen:
                            seen += 1
                            resent_at.append(time.monotonic())
                        else:
                            await asyncio.sleep(0.01)  # polling interval of a counter

            started = time.monotonic()
            await resends(4)
            first = resent_at[0] - started
            gaps = [b - a for a, b in zip(resent_at, resent_at[1:])]
            assert first >= 1.0 - POLL_SLACK, first
            # Doubling from 1 s, capped at 4 s (each at least that long, less the poll's slack: a resend noticed
            # one poll late shortens the next gap measured; later is the loaded machine's).
            assert gaps[0] >= 2.0 - POLL_SLACK and gaps[1] >= 4.0 - POLL_SLACK and gaps[2] >= 4.0 - POLL_SLACK, gaps
            # The hub answers: the wait starts from resend_after_s again.
            await asyncio.to_thread(hub.expect, "events")  # the batch's stream, which the ack names
            await asyncio.to_thread(hub.ack, 3)
            async with asyncio.timeout(60):
                while link._acked < 3:
                    await asyncio.sleep(0.01)  # polling interval of a condition
            assert link._resend_wait == SETTINGS.resend_after_s
            await store.emit("retail.stock.adjusted", {"sku": "S4", "delta": 1})
            acked_at = time.monotonic()
            await resends(5)
            assert resent_at[-1] - acked_at >= 1.0 - POLL_SLACK
            assert link._resend_wait == 2.0  # doubled once, from the start
        finally:
            await link.stop()
            await store.stop()

    try:
        asyncio.run(scenario())
        # Every resend sent the unacknowledged events again from the last ack, the same ids each time.
        while not hub.messages.empty():
            hub.seen.append(hub.messages.get_nowait())
        firsts = [json.loads(m.payload)[0] for m in hub.seen if m.topic == f"edge/{STORE}/events"]
        ones = [e["id"] for e in firsts if e["seq"] == 1]
        assert len(ones) >= 5 and len(set(ones)) == 1, ones  # sent, then 4 resends before the ack
    finally:
        hub.close()
