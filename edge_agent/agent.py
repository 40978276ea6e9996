"""The agent: the store, the bus and the device supervisor, started and
stopped together. The API's lifespan owns one Agent (edge_agent/api/app.py)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path

from drivers.base import Driver
from drivers.mirror.recorder import TryOnRecorder
from drivers.printer.spool import SPOOL
from drivers.registry import drivers
from edge_agent import __version__
from edge_agent import config_path as default_config_path
from edge_agent.assist import Desk
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig, Role
from edge_agent.config_apply import ConfigApply
from edge_agent.downlink_apply import DownlinkApply
from edge_agent.feed import Feed
from edge_agent.health import OpenAlerts, assess
from edge_agent.labels import LabelService
from edge_agent.members import MemberService
from edge_agent.printing import PrintSpool
from edge_agent.privacy import Privacy
from edge_agent.release import Releases
from edge_agent.scans import ScanService
from edge_agent.sessions import Sessions
from edge_agent.store import Store
from edge_agent.store.link_outbox import StoreOutbox, hub_settings
from edge_agent.store.outbox import Priority
from edge_agent.supervisor import Supervisor
from edge_agent.wristband import Bands
from edge_core.backoff import Backoff
from edge_core.bus import utcnow
from sync.downlink import Downlink
from sync.link import HubLink, LinkSettings

log = logging.getLogger(__name__)

# Where ``edge-agent run`` reads devices.yaml when neither --config nor EDGE_CONFIG says (edge_agent/cli.py).


class Agent:
    """Everything the daemon runs, for one store."""

    version = __version__

    def __init__(
        self,
        config: AgentConfig,
        data_dir: Path,
        registry: dict[str, type[Driver]] | None = None,
        backoff: Backoff = Backoff(),
        link_settings: LinkSettings = LinkSettings(),
        config_path: Path | None = None,
    ):
        self.config = config
        self.data_dir = Path(data_dir)
        # The status the process should exit with once stopped; set by a config that needs a restart.
        self.exit_status: int | None = None
        self.bus = EventBus()
        self.store = Store(self.data_dir / "store.db")
        self.printing = PrintSpool(self.store, self.bus, config)
        self.supervisor = Supervisor(config.devices, registry or drivers(), self.bus, backoff,
                                     extras={SPOOL: self.printing})
        self.feed = Feed(self.bus)
        self.alerts = OpenAlerts(self.bus, self.store)
        # A kiosk's calls for help (in memory) and the associates' wristbands they reach.
        self.assist = Desk(self.bus, config.assist.remind_s, config.assist.alert_after_s)
        self.bands = Bands(self.bus, self.assist)
        self.feed.closers.append(self.bands.close_client)  # an unpaired device loses its bands too
        self.sessions = Sessions(self.bus, config.sessions.idle_timeout)
        self.scans = ScanService(self.store, self.bus, self.sessions,
                                 kiosks=frozenset(c.name for c in config.api.clients if c.role == Role.KIOSK),
                                 loyalty=config.loyalty)
        self.members = MemberService(self.store, self.bus, config.loyalty.card_ttl, forget=self.feed.forget_member)
        self.labels = LabelService(config, self.store, self.bus, self.supervisor)
        # The try-on recorder knows the outbox only as this callable (drivers/mirror/recorder.py).
        self.tryon = TryOnRecorder(functools.partial(self.store.emit, priority=Priority.TELEMETRY), self.bus)
        # Retention of personal data and the access log of who read it (edge_agent/privacy.py).
        self.privacy = Privacy(self.store, config.privacy, config.store.id)
        self.feed.on_read = self.privacy.access.record
        self.started_at = utcnow()
        # The downlink parses and validates; DownlinkApply applies what it hands over to the store.
        self.downlink = Downlink(config.store.id, DownlinkApply(self), publish=self._publish)
        # The link knows the store's outbox, the config and the devices only through these (sync/outbox_port.py).
        self.link: HubLink | None = HubLink(
            hub_settings(config), StoreOutbox(self.store), self.bus, self.version, self.data_dir,
            devices=lambda: [d.as_dict() for d in self.supervisor.snapshot()],
            on_downlink=self.downlink.handle,
            settings=dataclasses.replace(link_settings, trouble_hold_s=config.hub.trouble_hold,
                                         takeover_backoff_s=config.hub.takeover_backoff),
            assess=lambda: assess(self),
        )
        self.downlink.link = self.link  # for the hub's resend_from and status commands
        # devices.yaml from the hub: checked, written, applied live or by a restart, rolled back by itself.
        # The file is the one ``edge-agent run`` read: --config, else EDGE_CONFIG, else the default.
        self.configs = ConfigApply(self, config_path or default_config_path())
        # Releases the hub names: verified, installed beside this one, switched to, rolled back by themselves.
        self.releases = Releases(self, config.updates)

    @property
    def hub_online(self) -> bool:
        """True while the MQTT link to the hub is connected."""
        return self.link is not None and self.link.connected

    def _publish(self, topic: str, payload: bytes) -> None:
        if self.link is not None:
            self.link.publish(topic, payload)

    async def start(self) -> None:
        """Open the store (migrating it), then bring up every device."""
        # First: a release on trial counts this start, and one that failed too often goes back at once.
        await self.releases.boot()
        await self.store.start()
        await self.privacy.start()  # the access log takes reads from the first request on
        await self.printing.start()  # before the printers: jobs cut short last time are queued again
        # Listening before the devices come up, so their first events are seen.
        await self.feed.start()
        await self.alerts.start()  # before the labels and printers raise anything
        await self.bands.start()
        await self.assist.start()
        await self.sessions.start()  # a scan at a kiosk is activity in its session
        await self.scans.start()
        await self.members.start()
        await self.labels.start()  # before the label devices: it attaches to their drivers
        await self.tryon.start()
        await self.supervisor.start()
        await self.configs.start()  # before the link: a version waiting for this restart is in force now
        if self.link is not None:
            await self.link.start()
        await self.releases.start()  # a release on trial is watched from here on
        log.info(
            "store %s: agent %s up with %d device(s), data in %s",
            self.config.store.id, self.version, len(self.supervisor.owners), self.data_dir,
        )

    async def stop(self) -> None:
        """Leave the hub, stop devices (they may still write), then drain and close the store."""
        await self.releases.stop()  # an update in progress stops; the retained message brings it again
        await self.configs.stop()  # a version being applied finishes; no rollback starts now
        if self.link is not None:
            await self.link.stop()
        await self.labels.stop()  # no push left in flight when the label devices close
        await self.supervisor.stop()
        await self.tryon.stop()
        await self.members.stop()
        await self.scans.stop()
        await self.sessions.stop()
        await self.assist.stop()
        await self.bands.stop()
        await self.alerts.stop()
        await self.feed.stop()
        await self.privacy.stop()  # the last reads written before the store closes
        await self.store.stop()
        log.info("store %s: agent stopped", self.config.store.id)
        if self.exit_status is not None:
            # Everything above is done (sales on disk, the hub told, devices closed): leave with the status
            # that has systemd start the agent again (Restart=on-failure). uvicorn's lifespan would swallow
            # a SystemExit here, so the process ends itself.
            log.warning("exiting with status %d to be started again (a new configuration or release)",
                        self.exit_status)
            logging.shutdown()
            os._exit(self.exit_status)
