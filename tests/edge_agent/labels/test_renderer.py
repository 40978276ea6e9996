"""The render worker process: draws what the thread would, and never outlives the agent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from edge_agent.catalog import Product
from edge_agent.labels.plan import desire, draw
from edge_agent.labels.renderer import Renderer
from support.agent import ROOT

PRODUCT = Product(sku="MILK", barcodes=[], name="Milk 1 L 牛奶", price=Decimal("12.80"), currency="CNY", promo=None,
                  stock_store=3, stock_online=0, rating=4.5, reviews=10, version=1)


def test_the_worker_process_draws_the_same_picture_as_the_thread():
    wanted = desire("MILK", PRODUCT, "m2-2.9-bwr", datetime.now(timezone.utc), url="https://x.example/p/MILK")

    async def both():
        process, thread = Renderer(1), Renderer(0)
        try:
            return await process.draw(wanted, "jpeg"), await thread.draw(wanted, "jpeg")
        finally:
            await asyncio.to_thread(process.close)
            thread.close()

    (a, da), (b, db) = asyncio.run(asyncio.wait_for(both(), 60))
    assert a == b == draw(wanted, "jpeg")[0] and da == db == wanted


CHILD = """
import asyncio, os
from datetime import datetime, timezone
from edge_agent.labels.plan import desire
from edge_agent.labels.renderer import Renderer
from tests_product import PRODUCT

async def main():
    renderer = Renderer(1)
    drawing = asyncio.ensure_future(renderer.draw(desire("MILK", PRODUCT, "m2-2.9-bwr", datetime.now(timezone.utc))))
    await asyncio.sleep(0)  # the worker process is being started
    if WAIT:
        await drawing
    print(os.getpid(), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("wait", [True, False], ids=["after-a-drawing", "while-it-starts"])
def test_the_worker_goes_when_the_agent_is_killed(tmp_path, wait):
    (tmp_path / "tests_product.py").write_text(
        "from decimal import Decimal\nfrom edge_agent.catalog import Product\n"
        "PRODUCT = Product(sku='MILK', barcodes=[], name='Milk', price=Decimal('12.80'), currency='CNY', "
        "promo=None, stock_store=0, stock_online=0, rating=None, reviews=0, version=1)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", f"WAIT = {wait}\n" + CHILD], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        pid = int(proc.stdout.readline())
        workers = [c for c in _children(pid) if _alive(c)]
        assert workers, "no worker process was started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, f"render worker(s) {workers} outlived the killed agent"
        time.sleep(0.05)


def test_requests_made_together_are_drawn_in_batches_each_getting_its_own_picture():
    at = datetime.now(timezone.utc)
    wanted = [desire(f"S{i}", PRODUCT.model_copy(update={"sku": f"S{i}", "price": Decimal(f"{i + 1}.00")}),
                     "m2-2.9-bwr", at) for i in range(40)]
    broken = wanted[7].__class__(**{**wanted[7].__dict__, "model": "no-such-model"})

    async def many():
        renderer = Renderer(0, batch=8)
        try:
            results = await asyncio.gather(*(renderer.draw(d) for d in [*wanted[:7], broken, *wanted[8:]]),
                                           return_exceptions=True)
            return results, renderer.batches
        finally:
            renderer.close()

    results, batches = asyncio.run(many())
    assert batches <= 2 + 38 // 8 + 1  # the first two at once, then eight at a time
    assert "no-such-model" in str(results[7])
    for i, result in enumerate(results):
        if i != 7:
            image, drawn = result
            assert drawn is not None and drawn.sku == f"S{i}"
            assert image.tobytes() == draw(wanted[i])[0].tobytes()
