"""Certificates of the store's own near their end: ``cert_expiring`` (a warning) within 30 days,
``cert_expired`` past it, on the store's health, read from real PEM files with an injected clock;
then the hub console's shipped rules raise them."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent import health
from sync.console.facts import StoreFacts
from sync.console.rules import RuleEngine, load_rules

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)


def cert(path: Path, not_after: datetime) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store-042")])
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(not_after - timedelta(days=397))
         .not_valid_after(not_after).sign(key, hashes.SHA256()))
    path.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return path


def agent(hub_cert: Path | None, api_cert: Path | None) -> SimpleNamespace:
    tls = SimpleNamespace(cert_file=api_cert) if api_cert else None
    return SimpleNamespace(config=SimpleNamespace(hub=SimpleNamespace(cert_file=hub_cert),
                                                  api=SimpleNamespace(tls=tls)))


def test_a_certificate_is_said_30_days_before_its_end_and_past_it(tmp_path):
    hub = cert(tmp_path / "client.crt", NOW + timedelta(days=30, seconds=1))
    api = cert(tmp_path / "api.crt", NOW + timedelta(days=200))
    a = agent(hub, api)
    assert health.cert_reasons(a, NOW) == []                           # 30 days and a second left
    [r] = health.cert_reasons(a, NOW + timedelta(seconds=2))           # under 30 days
    assert (r["code"], r["subject"]) == ("cert_expiring", "hub")
    assert "expires on 2027-03-31, in 29 days" in r["message"] and "edge-agent enroll --force" in r["message"]
    [r] = health.cert_reasons(a, NOW + timedelta(days=31))
    assert (r["code"], r["subject"]) == ("cert_expired", "hub") and "expired on 2027-03-31" in r["message"]
    assert "cert_expiring" in health.WARNING_CODES and "cert_expired" not in health.WARNING_CODES
    # A renewed file is read again (its change, not a restart): the reason goes.
    cert(hub, NOW + timedelta(days=397))
    os.utime(hub, ns=(1, 1))  # a different mtime for certain, even within the clock's resolution
    assert health.cert_reasons(a, NOW + timedelta(days=31)) == []
    # The API's certificate is watched too.
    [r] = health.cert_reasons(a, NOW + timedelta(days=190))
    assert (r["code"], r["subject"]) == ("cert_expiring", "api")


def test_an_unreadable_or_missing_certificate_is_left_to_whoever_loads_it(tmp_path):
    bad = tmp_path / "client.crt"
    bad.write_text("not a certificate")
    assert health.cert_reasons(agent(bad, tmp_path / "missing.crt"), NOW) == []
    assert health.cert_reasons(agent(None, None), NOW) == []


def test_the_hub_console_raises_them_with_the_shipped_rules():
    rules = load_rules(None)
    engine = RuleEngine(rules)
    snap = {"status": "degraded", "reasons": [
        {"code": "cert_expiring", "subject": "api", "message": "the local API's certificate expires soon"},
        {"code": "cert_expired", "subject": "hub", "message": "the MQTT client certificate expired"}]}
    f = StoreFacts("store-042", "online", NOW.isoformat(), "0.1.0", snap, NOW.isoformat())
    firing = sorted((c.rule, c.subject, c.severity) for c in engine.evaluate([f], NOW).firing)
    assert firing == [("certificate-expired", "cert_expired", "critical"),
                      ("certificate-expiring", "cert_expiring", "warning")]
