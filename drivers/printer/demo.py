"""The receipt printer's stand-in for ``make run``: the ESC/POS emulator on the device's loopback
address, writing what it prints, as text, to ``<run dir>/<device id>.txt``."""

from __future__ import annotations

from pathlib import Path

from drivers.base import DemoSite
from drivers.printer.config import PrinterConfig
from drivers.printer.elements import Element
from drivers.printer.emulator import PrinterEmulator, describe

LOOPBACK = ("127.0.0.1", "localhost")


class DemoPrinter:
    """A printer emulator on loopback whose receipts are written, as text, to ``path``."""

    def __init__(self, host: str, port: int, profile: str, path: Path):
        self.path = path
        self.tcp_port: int | None = port
        self.emulator = PrinterEmulator(host, port, profile=profile, on_element=self._write)

    def _write(self, element: Element) -> None:
        line = describe(element)
        if line:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    async def start(self) -> None:
        """Listen on the device's address; OSError when another program has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.emulator.start()

    async def stop(self) -> None:
        """Stop listening."""
        await self.emulator.stop()

    def banner(self) -> list[tuple[str, str]]:
        """Where its receipts appear."""
        return [("Receipts", f"tail -f {self.path}")]


def demo_emulator(config: PrinterConfig, site: DemoSite) -> DemoPrinter | None:
    """A printer emulator for a TCP printer on loopback, else None (a real printer)."""
    address = config.address
    if config.connection != "tcp" or address is None or address.host not in LOOPBACK:
        return None
    return DemoPrinter(address.host, address.port, config.profile, site.run_dir / f"{config.id}.txt")
