"""What the agent logs when a TLS handshake fails: a client that refused the agent's certificate is told apart from
a client whose own certificate the agent refused.

A real HTTPS agent without client certificates; clients that do not trust
its CA (the system's CAs, as a phone that was never given the store's CA,
and a stranger's CA), then one that does.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
from support.agent import AgentProcess, config_dict, free_port, make_tls
from support.tls import CertAuthority

UNTRUSTED = "the client did not trust this agent's certificate"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    wd = tmp_path_factory.mktemp("tls-log")
    agent = AgentProcess(wd, config_dict(free_port()), tls=make_tls(wd / "ca"))
    agent.start()
    yield agent
    agent.close()


def _log_line(agent: AgentProcess, text: str, timeout: float = 30.0) -> str:
    """The first line of the agent's log with ``text``, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [ln for ln in agent.log().splitlines() if text in ln]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {text!r} in the agent's log:\n{agent.log()[-3000:]}"
        time.sleep(0.05)  # polling a file another process writes


def test_a_client_that_does_not_trust_the_agents_ca_is_logged_as_such_not_as_a_client_certificate(
        agent: AgentProcess, tmp_path) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{agent.url}/v1/health", timeout=30)  # the system's CAs: never given the store's
    line = _log_line(agent, UNTRUSTED)
    assert "from 127.0.0.1" in line and "TLSV1_ALERT_UNKNOWN_CA" in line
    assert "give it the CA that issued api.tls.cert_file" in line
    assert "no valid client certificate" not in agent.log() and "api.tls.client_cert" not in agent.log()

    stranger = CertAuthority(tmp_path / "stranger", name="a stranger's CA").create()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{agent.url}/v1/health", timeout=30, verify=ssl.create_default_context(cafile=stranger.cert))
    assert "no valid client certificate" not in agent.log()
    with agent.client("associate") as c:  # the store's CA: served
        assert c.get("/v1/health").status_code == 200


@pytest.mark.parametrize(("reason", "key"), [
    ("TLSV1_ALERT_UNKNOWN_CA", "untrusted"), ("SSLV3_ALERT_BAD_CERTIFICATE", "untrusted"),
    ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "untrusted"), ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "cert"),
    ("CERTIFICATE_VERIFY_FAILED", "cert"), ("HTTP_REQUEST", "plain")])
def test_each_failure_has_its_words(reason: str, key: str) -> None:
    """Alerts the client sent (its verdict on the agent's certificate) against the agent's verdict on the
    client's; Chromium sends bad_certificate or certificate_unknown where curl sends unknown_ca."""
    from edge_agent.api.limits import _handshake_failure

    err = ssl.SSLError(1, reason)
    err.reason = reason
    got, why = _handshake_failure(err)
    assert got == key and reason in why
    assert ("client certificate" in why) == (key == "cert")
