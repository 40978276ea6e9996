"""devices.yaml validation: every broken fixture is reported as FILE:LINE: message.

The fixtures in tests/fixtures/config/ each break the demo devices.yaml in
one way (a few in several, to prove every problem is reported at once).
``EXPECTED`` holds, per fixture, the line and a piece of the message of each
problem, in the order ``edge-agent check`` prints them.

Environment overrides: a bad EDGE_STORE_ID, EDGE_HUB_URL or EDGE_API_LISTEN
is reported at the line of the key it replaces (``store.id``, ``hub.url``,
``api.listen``); when the file lacks that key, at the line of its section,
and when it lacks the section too, at the line of the document's first key.
The message names the variable.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from drivers.registry import drivers as registered_drivers
from edge_agent import config
from edge_core.config_types import HostPort
from edge_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "config"
DEMO = REPO / "devices.yaml"
PROBLEM_LINE = re.compile(r"^.+:\d+: .+$")

# A small valid config with known lines (store.id 2, hub.url 5, api.listen 7), so
# that tests do not depend on the lines of the demo devices.yaml.
BASE = """\
store:
  id: store-001
  name: Demo Store
hub:
  url: mqtt://127.0.0.1:1883
api:
  listen: 127.0.0.1:8080
devices:
  - id: heartbeat-1
    kind: sensor.heartbeat
"""

# fixture -> [(line, piece of the message), ...], in the order they are printed.
EXPECTED: dict[str, list[tuple[int, str]]] = {
    "bad_yaml_indent.yaml": [(6, "not valid YAML: a tab character; YAML indents with spaces only")],
    "bad_yaml_unclosed_quote.yaml": [(3, "not valid YAML: a quoted value is never closed")],
    "two_documents.yaml": [(4, "a second document ('---'); keep one document per file")],
    "not_utf8.yaml": [(3, "not UTF-8 text")],
    "not_a_mapping.yaml": [(2, "the file is a list, not a mapping")],
    "empty_file.yaml": [(1, "store is required; add it")],
    "section_not_a_mapping.yaml": [(1, "store must be a mapping (got 'store-001')")],
    "unknown_top_key.yaml": [(6, "unknown key 'device' at the top level; did you mean 'devices'?")],
    "unknown_kind.yaml": [(8, "unknown device kind 'sensor.hearbeat'; did you mean 'sensor.heartbeat'?")],
    "unknown_device_key.yaml": [(8, "unknown key 'baudrate' in devices.0; remove it")],
    "duplicate_device_id.yaml": [(10, "device id 'heartbeat-1' is already used at line 5")],
    "duplicate_yaml_key.yaml": [(5, "store.name appears twice (first at line 3); keep one")],
    "missing_store_id.yaml": [(1, "store.id is required; add it")],
    "missing_device_kind.yaml": [(7, "devices.1.kind is required; add 'kind:' with one of: "
                                  + ", ".join(sorted(registered_drivers())))],
    "devices_not_a_list.yaml": [(4, "devices must be a list; start each device with '- '")],
    "wrong_type_interval.yaml": [(8, "devices.0.interval must be a number (got 'often')")],
    "negative_interval.yaml": [(8, "devices.0.timeout is too small (got -2); use a number greater than 0")],
    "bad_enabled.yaml": [(7, "devices.0.enabled must be true or false (got 'sometimes')")],
    "bad_device_id.yaml": [(5, "devices.0.id must be lowercase letters, digits, '-' and '_', e.g. scanner-1")],
    "bad_store_id.yaml": [(2, "store.id must be lowercase letters, digits and '-', e.g. store-001")],
    "bad_timezone.yaml": [(4, "unknown time zone 'Beijing'; use an IANA name such as Asia/Shanghai")],
    "bad_port_listen.yaml": [(5, "api.listen: port '70000' in '127.0.0.1:70000' is not a number from 1 to 65535")],
    "bad_device_address.yaml": [(7, "devices.0.address: 'localhost' has no port; write host:port")],
    "bad_hub_url_scheme.yaml": [(5, "hub.url: 'http://hub.example.com:1883' must start with mqtt://")],
    "bad_hub_url_port.yaml": [(6, "hub.url: 'mqtt://hub.example.com:notaport' has a bad port")],
    "hub_url_with_credentials.yaml": [(5, "use hub.username and hub.password_file")],
    "cert_without_key.yaml": [(8, "hub.cert_file: cert_file is set but key_file is not")],
    "clear_text_token.yaml": [(12, "api.clients.1.token_sha256: this is not the 64 hex digits of a SHA-256")],
    "duplicate_client_name.yaml": [(12, "api.clients.2.name: client name 'kiosk-1' is already used")],
    "shared_token.yaml": [(11, "'kiosk-2' has the same token as clients.0")],
    "bad_role.yaml": [(7, "api.clients.0.role is not a valid choice (got 'cashier'); "
                      "use one of 'kiosk', 'associate', 'mirror', 'console' or 'admin'")],
    "mirror_clients_of_another_role.yaml": [
        (20, "devices.0.kiosk: 'kiosk-9' is not an api client; name a client with role kiosk (in this file: "
             "kiosk-1)"),
        (24, "devices.1.station: 'mirror-2' is not an api client; name a client with role mirror (in this file: "
             "mirror-1)"),
        (25, "devices.1.kiosk: 'pad-1' is an api client with role associate, not kiosk"),
    ],
    # A receipt for a station that names no api client would never print; a mirror is no selling client.
    "station_names_no_client.yaml": [
        (23, "devices.1.station: 'kiosk-2' is not an api client; name a client with role kiosk or associate "
             "(in this file: kiosk-1, pad-1)"),
        (33, "devices.3.station: 'counter-1' is not an api client"),
        (38, "devices.4.station: 'mirror-1' is an api client with role mirror, not kiosk or associate"),
    ],
    "bad_idle_timeout.yaml": [(5, "sessions.idle_timeout is too small (got 0.5); use a number at least 1")],
    "two_problems.yaml": [
        (12, "api.clients.0.token_sha256: this is not the 64 hex digits"),
        (16, "devices.0.interval is too small (got 0); use a number greater than 0"),
    ],
    "many_problems.yaml": [
        (9, "hub.username appears twice (first at line 8)"),
        (14, "api.clients.0.role is not a valid choice (got 'manager')"),
        (21, "unknown device kind 'scanner.usb'"),
    ],
}

# Secrets written in a broken fixture that must never be echoed back.
SECRETS = {
    "hub_url_with_credentials.yaml": "s3cret-hub-pass",
    "clear_text_token.yaml": "demo-associate",
    "two_problems.yaml": "demo-kiosk",
}


def _env(**overrides: str) -> dict[str, str]:
    """The test's environment without any EDGE_* variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    return {**env, **overrides}


def run_check(path: Path | str, **env: str) -> subprocess.CompletedProcess[str]:
    """``edge-agent check --config PATH`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check", "--config", str(path)],
        cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=30,
    )


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The problems ``config.load`` reports for ``path``; fails if it loads."""
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={} if environ is None else environ)
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "devices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_fixture_has_an_expectation() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.yaml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 18


# Each fixture through the real command ---------------------------------------

@pytest.fixture(scope="module")
def fixture_checks() -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """One ``edge-agent check`` per fixture, run a few at a time to keep the file fast."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        yield {name: pool.submit(run_check, FIXTURES / name) for name in sorted(EXPECTED)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_reports_fixture(
    name: str, fixture_checks: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    path = FIXTURES / name
    result = fixture_checks[name].result()
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    *problems, summary = lines
    assert summary == f"{path}: {len(problems)} problem(s)"
    for line in problems:
        assert PROBLEM_LINE.match(line), line
        assert line.startswith(f"{path}:"), line
    assert len(problems) == len(EXPECTED[name]), result.stderr
    for line, (number, piece) in zip(problems, EXPECTED[name]):
        prefix = f"{path}:{number}: "
        assert line.startswith(prefix) and piece in line[len(prefix):], (line, number, piece)
    if name in SECRETS:
        assert SECRETS[name] not in result.stderr


# The same, in-process: exact problems, and what they must not contain ---------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_reports_fixture(name: str) -> None:
    path = FIXTURES / name
    problems = problems_of(path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:{n}" for n, _ in EXPECTED[name]]
    for problem, (_, piece) in zip(problems, EXPECTED[name]):
        assert piece in problem
        # "what is wrong; how to fix it": every message says what to do.
        assert ";" in problem or "did you mean" in problem, problem
        assert "String should" not in problem and "Input should" not in problem and "^" not in problem


def test_demo_config_passes() -> None:
    result = run_check(DEMO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert re.fullmatch(rf"{re.escape(str(DEMO))}: ok \(store store-001, [1-9]\d* device\(s\), \d+ client\(s\)\)\n",
                        result.stdout), result.stdout


def test_missing_file() -> None:
    missing = FIXTURES / "no_such_file.yaml"
    result = run_check(missing)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{missing}:1: no such file")
    assert "--config" in first and "EDGE_CONFIG" in first


def test_directory_instead_of_file() -> None:
    (problem,) = problems_of(FIXTURES)
    assert problem.startswith(f"{FIXTURES}:1: this is a directory")


def test_problems_are_sorted_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "devices:\n  - id: hb-1\n    kind: sensor.heartbeat\n    interval: -1\n"
        "store:\n  id: BAD\n  name: Demo Store\n"
        "api:\n  listen: nowhere\n"
    ))
    problems = problems_of(path)
    assert [int(p.split(":")[1]) for p in problems] == [4, 6, 9]


# Environment overrides -------------------------------------------------------

def test_env_overrides_replace_file_values() -> None:
    env = {"EDGE_STORE_ID": "store-042", "EDGE_HUB_URL": "mqtts://hub.example.com:8883",
           "EDGE_API_LISTEN": "0.0.0.0:9090"}
    cfg = config.load(DEMO, environ=env)
    assert cfg.store.id == "store-042"
    assert cfg.hub.url == "mqtts://hub.example.com:8883"
    assert cfg.api.listen == HostPort(host="0.0.0.0", port=9090)


def test_env_overrides_apply_when_the_file_lacks_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "store:\n  name: Demo Store\nhub:\n")  # no store.id, an empty hub, no api
    cfg = config.load(path, environ={"EDGE_STORE_ID": "store-007", "EDGE_HUB_URL": "mqtt://10.0.0.1:1883",
                                     "EDGE_API_LISTEN": "127.0.0.1:8181"})
    assert (cfg.store.id, cfg.hub.url, str(cfg.api.listen)) == ("store-007", "mqtt://10.0.0.1:1883", "127.0.0.1:8181")


def test_empty_env_variable_counts_as_unset(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, BASE), environ={"EDGE_STORE_ID": "", "EDGE_HUB_URL": "", "EDGE_API_LISTEN": ""})
    assert (cfg.store.id, cfg.hub.url, str(cfg.api.listen)) == ("store-001", "mqtt://127.0.0.1:1883", "127.0.0.1:8080")


def test_env_override_wins_over_a_bad_file_value() -> None:
    cfg = config.load(FIXTURES / "bad_store_id.yaml", environ={"EDGE_STORE_ID": "store-001"})
    assert cfg.store.id == "store-001"


@pytest.mark.parametrize(("var", "value", "line", "piece"), [
    ("EDGE_STORE_ID", "Store_9", 2, "store.id must be lowercase letters"),
    ("EDGE_HUB_URL", "http://hub:1883", 5, "hub.url: 'http://hub:1883' must start with mqtt://"),
    ("EDGE_API_LISTEN", "127.0.0.1:99999", 7, "api.listen: port '99999'"),
])
def test_bad_env_override_is_reported_at_the_key_it_replaces(
    tmp_path: Path, var: str, value: str, line: int, piece: str
) -> None:
    path = write(tmp_path, BASE)
    (problem,) = problems_of(path, {var: value})
    assert problem.startswith(f"{path}:{line}: ")
    assert piece in problem
    assert problem.endswith(f"this value comes from the environment variable {var}: fix or unset it")


def test_bad_env_override_without_the_key_is_reported_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "# demo\nstore:\n  name: Demo Store\nhub:\n  username: store-001\n")
    problems = problems_of(path, {"EDGE_STORE_ID": "Bad Id", "EDGE_HUB_URL": "ftp://x", "EDGE_API_LISTEN": "x"})
    # store.id: its section, line 2; api.listen: no api section, so the first key, line 2; hub.url: hub, line 4.
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:2", f"{path}:2", f"{path}:4"]
    assert [re.search(r"variable (EDGE_\w+):", p)[1] for p in problems] == [
        "EDGE_STORE_ID", "EDGE_API_LISTEN", "EDGE_HUB_URL"]


def test_check_reads_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    bad = run_check(path, EDGE_STORE_ID="Store 1")
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"{path}:2: store.id must be lowercase letters")
    assert "EDGE_STORE_ID" in bad.stderr
    good = run_check(path, EDGE_STORE_ID="store-777")
    assert good.returncode == 0, good.stderr
    assert "(store store-777," in good.stdout


# Check touches no hardware ---------------------------------------------------

def test_check_opens_no_device(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        closed_port = closed.getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as listening:
        listening.setblocking(False)
        path = write(tmp_path, BASE + (
            "  - id: heartbeat-closed\n    kind: sensor.heartbeat\n"
            f"    address: 127.0.0.1:{closed_port}\n    timeout: 60\n"
            "  - id: heartbeat-listening\n    kind: sensor.heartbeat\n"
            f"    address: 127.0.0.1:{listening.getsockname()[1]}\n    timeout: 60\n"
        ))
        started = time.monotonic()
        result = run_check(path)
        assert result.returncode == 0, result.stderr
        assert "3 device(s)" in result.stdout
        assert time.monotonic() - started < 10
        with pytest.raises(BlockingIOError):
            listening.accept()  # nobody connected


# YAML details ----------------------------------------------------------------

def test_merge_keys_share_settings_and_own_keys_win(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "store: {id: store-001, name: Demo Store}\n"
        "devices:\n"
        "  - &beat\n    id: heartbeat-1\n    kind: sensor.heartbeat\n    interval: 5\n    timeout: 1\n"
        "  - <<: *beat\n    id: heartbeat-2\n    interval: 10\n"
    ))
    cfg = config.load(path, environ={})
    assert [(d.id, d.interval, d.timeout) for d in cfg.devices] == [("heartbeat-1", 5, 1), ("heartbeat-2", 10, 1)]


def test_merged_value_errors_point_at_the_anchor(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "store: {id: store-001, name: Demo Store}\n"
        "devices:\n"
        "  - &beat\n    id: heartbeat-1\n    kind: sensor.heartbeat\n    interval: often\n"
        "  - <<: *beat\n    id: heartbeat-2\n"
    ))
    assert [p.split(": ", 1)[0] for p in problems_of(path)] == [f"{path}:6", f"{path}:6"]


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "store: !!python/object/apply:os.system [echo hi]\n")
    problems = problems_of(path)
    assert any("tag" in p and "not allowed" in p for p in problems)


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "store:\n  id: store-001\n  name: Demo Store\nhub:\napi:\n  clients:\ndevices:\n")
    cfg = config.load(path, environ={})
    assert (cfg.hub.url, str(cfg.api.listen), cfg.api.clients, cfg.devices) == (
        "mqtt://127.0.0.1:1883", "127.0.0.1:8080", [], [])


def test_number_where_text_is_expected_says_to_quote(tmp_path: Path) -> None:
    path = write(tmp_path, "store:\n  id: store-001\n  name: 2024\n")
    (problem,) = problems_of(path)
    assert problem == f"{path}:3: store.name must be text (got 2024); put the value in quotes"


# Value types -----------------------------------------------------------------

def test_upper_case_token_hash_is_accepted_and_normalised(tmp_path: Path) -> None:
    digest = "49D6CC27F1E3B72FB829AC8EC864FC2045E8684B5BFB2B46B0A922330C84D6EA"
    path = write(tmp_path, (
        "store: {id: store-001, name: Demo Store}\n"
        f"api:\n  clients:\n    - {{name: kiosk-1, role: kiosk, token_sha256: {digest}}}\n"
    ))
    assert config.load(path, environ={}).api.clients[0].token_sha256 == digest.lower()


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("[::1]:8080", "::1", 8080),
    ("scanner.local:9100", "scanner.local", 9100),
])
def test_host_port_round_trips(text: str, host: str, port: int) -> None:
    value = HostPort.model_validate(text)
    assert (value.host, value.port, str(value)) == (host, port, text)


@pytest.mark.parametrize(("text", "piece"), [
    ("localhost", "has no port"),
    (":8080", "has no host"),
    ("::1:8080", "IPv6 addresses go in brackets"),
    ("host:0", "not a number from 1 to 65535"),
    ("host:http", "not a number from 1 to 65535"),
    (8080, "write host and port as one string"),
])
def test_host_port_rejects(text: object, piece: str) -> None:
    with pytest.raises(ValueError, match=re.escape(piece)):
        HostPort.model_validate(text)


def test_hub_username_must_be_the_store_id():
    text = "store:\n  id: store-001\n  name: S\nhub:\n  username: store-002\n"
    with pytest.raises(ConfigError) as err:
        config.parse(text, "d.yaml", {})
    assert "hub.username 'store-002' differs from store.id 'store-001'" in err.value.problems[0]


def test_check_reports_unreadable_credential_files_with_their_line(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text("store:\n  id: store-001\n  name: S\nhub:\n  url: mqtts://hub.example.com:8883\n"
                    f"  password_file: {tmp_path}/nope.pass\n  ca_file: {tmp_path}/ca.pem\n")
    (tmp_path / "ca.pem").write_text("not checked here beyond being readable")
    out = subprocess.run([sys.executable, "-m", "edge_agent.cli", "check", "--config", str(path)],
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                              if not k.startswith("EDGE_")})
    assert out.returncode == 2
    assert f"{path}:6: hub.password_file: cannot read {tmp_path}/nope.pass" in out.stderr
    assert "ca_file" not in out.stderr


def test_sessions_idle_timeout_defaults_to_three_minutes_and_may_be_short(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, BASE), environ={}).sessions.idle_timeout == 180
    short = config.load(write(tmp_path, BASE + "sessions:\n  idle_timeout: 5\n"), environ={})
    assert short.sessions.idle_timeout == 5
