"""Shared fixtures; the helpers behind them live in tests/support/."""

from __future__ import annotations

import shutil
import tempfile
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
def postgres_server() -> Iterator:
    """One throwaway PostgreSQL server for the whole run, stopped by its PID."""
    from support.postgres import Postgres

    # Not under pytest's basetemp: the server runs as the postgres user, which must traverse every parent,
    # and each pytest session that starts on this machine (another run, CI beside a developer's) sets
    # /tmp/pytest-of-<user> back to 0700; the server lost its data directory mid-run that way.
    workdir = Path(tempfile.mkdtemp(prefix="edge-agent-pg-", dir="/tmp"))
    server = Postgres(workdir).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database on the throwaway server."""
    return postgres_server.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """A fresh, empty hub database: a SQLite file, or a new database on the throwaway PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    return request.getfixturevalue("postgres_url")
