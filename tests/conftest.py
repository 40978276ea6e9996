"""Shared fixtures; the helpers behind them live in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.agent import AgentProcess, config_dict, free_port


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator:
    """Factory: ``make_agent(devices=..., env=...)`` gives an unstarted AgentProcess."""
    made: list[AgentProcess] = []

    def factory(devices: list[dict] | None = None, env: dict[str, str] | None = None,
                workdir: Path | None = None, config: dict | None = None) -> AgentProcess:
        wd = workdir or tmp_path / f"agent{len(made)}"
        wd.mkdir(exist_ok=True)
        agent = AgentProcess(wd, config or config_dict(free_port(), devices), env)
        made.append(agent)
        return agent

    yield factory
    for agent in made:
        agent.close()


@pytest.fixture(scope="module")
def running_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent with the demo catalog, shared by a module's read-mostly API tests."""
    wd = tmp_path_factory.mktemp("agent")
    agent = AgentProcess(wd, config_dict(free_port()))
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator:
    """A real Mosquitto on a free loopback port, stopped by its PID afterwards."""
    from support.mosquitto import Mosquitto

    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One throwaway PostgreSQL server for the whole run, stopped by its PID."""
    from support.postgres import Postgres

    server = Postgres(tmp_path_factory.mktemp("postgres")).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database on the throwaway server."""
    return postgres_server.database()
