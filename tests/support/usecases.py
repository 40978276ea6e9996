"""What the tests of edge_agent/usecases/ share: a store with the catalog in it, what the bus carried, and
the HTTP answer a domain error gets."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from edge_agent import catalog
from edge_agent.agent import Agent
from edge_agent.api.errors import answer
from edge_agent.errors import DomainError
from support.agent import DEMO_CATALOG


async def load_catalog(agent: Agent, items: list[dict[str, Any]] | None = None) -> None:
    """The demo catalog (or ``items``) into the started store of ``agent``."""
    raw = json.dumps(items) if items is not None else DEMO_CATALOG.read_text()
    products = TypeAdapter(list[catalog.CatalogItem]).validate_json(raw)
    await agent.store.write(lambda tx: catalog.upsert(tx.conn, products))


def heard(sub) -> list[tuple[str, dict[str, Any]]]:
    """What the bus carried so far, in order."""
    out = []
    while not sub.queue.empty():
        event = sub.queue.get_nowait()
        out.append((event.type, event.data))
    return out


def refused(err: DomainError) -> tuple[int, str]:
    """The status and detail the local API answers ``err`` with."""
    response = answer(err)
    return response.status_code, json.loads(response.body)["detail"]
