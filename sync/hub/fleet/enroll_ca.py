"""The hub's enrollment CA: made once (``edge-hub ca init``), it checks a store PC's certificate requests and signs them.

Keys never travel: a store PC makes its own EC P-256 keys and sends two
certificate signing requests (CSRs). This module checks each one before it
signs anything and builds the certificate itself; nothing of a CSR but its
public key is copied into a certificate:

- the MQTT client certificate: CN = the store id, whatever the request
  says if it says nothing, refused if it names another store (Mosquitto's
  ``use_identity_as_username true`` makes it the login, so the shipped ACL
  patterns ``edge/%u/#`` and ``hub/%u/#`` apply as they are), clientAuth;
- the local API's server certificate: SANs from the host name and addresses
  the PC sends, checked (no wildcard, at most ``MAX_NAMES`` names), serverAuth.

Both last ``CERT_DAYS`` (short enough to be renewed, the CA/Browser Forum's
397 days), with random serials. The CA directory holds ``ca.crt``, ``ca.key``
(mode 0600) and, when the broker's own server certificate comes from another
CA, ``broker-ca.crt``: what a store must trust for the broker.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_DAYS = 397
CA_DAYS = 3650
MAX_CSR_BYTES = 4096       # a P-256 CSR with 8 names is under 1 KiB of PEM
MAX_NAMES = 8              # host name plus addresses in the API certificate
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$")


class CSRRefused(ValueError):
    """A certificate request (or the names sent with it) that the hub will not sign; the message says why."""


@dataclass(frozen=True)
class EnrollmentCA:
    """The CA's certificate and key, and the PEM a store trusts for the broker."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    broker_ca_pem: str

    @property
    def cert_pem(self) -> str:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def init_ca(directory: Path, name: str = "edge-hub enrollment CA", now: datetime | None = None) -> Path:
    """Make a new CA in ``directory`` (ca.key 0600, ca.crt); FileExistsError if one is there."""
    now = now or datetime.now(timezone.utc)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (directory / "ca.key").exists() or (directory / "ca.crt").exists():
        raise FileExistsError(f"{directory} already holds a CA (ca.key, ca.crt); every enrolled store trusts it, "
                              "so it is never replaced by this command")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_new(directory / "ca.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()), 0o600)
    _write_new(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return directory / "ca.crt"


def load_ca(directory: Path) -> EnrollmentCA:
    """The CA in ``directory``; ValueError saying what is missing or wrong."""
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        broker = directory / "broker-ca.crt"
        broker_pem = (broker if broker.exists() else directory / "ca.crt").read_text()
    except OSError as err:
        raise ValueError(f"--enroll-ca {directory}: cannot read {err.filename}: {err.strerror}; "
                         "make the CA with `edge-hub ca init --dir DIR`") from err
    except (ValueError, TypeError) as err:
        raise ValueError(f"--enroll-ca {directory}: not a PEM certificate and unencrypted key ({err})") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ValueError(f"--enroll-ca {directory}: ca.key is not the key of ca.crt")
    if os.stat(directory / "ca.key").st_mode & 0o077:
        raise ValueError(f"--enroll-ca {directory}: ca.key is readable by others; chmod 600 {directory / 'ca.key'}")
    return EnrollmentCA(cert, key, broker_pem)


def parse_csr(pem: str, what: str) -> x509.CertificateSigningRequest:
    """A PEM CSR whose signature holds and whose key is EC P-256; CSRRefused otherwise."""
    if len(pem.encode()) > MAX_CSR_BYTES:
        raise CSRRefused(f"{what}: the request has more than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as err:
        raise CSRRefused(f"{what}: not a PEM certificate signing request") from err
    try:
        ok = csr.is_signature_valid
    except (InvalidSignature, ValueError):
        ok = False
    if not ok:
        raise CSRRefused(f"{what}: the request's signature does not hold")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CSRRefused(f"{what}: the key must be EC P-256 (what edge-agent enroll makes)")
    for ext in csr.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            for dns in ext.value.get_values_for_type(x509.DNSName):
                if "*" in dns:
                    raise CSRRefused(f"{what}: a wildcard name ({dns}) is never signed")
    return csr


def _cn(csr: x509.CertificateSigningRequest) -> str | None:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if len(names) == 1 else None


def check_names(hostname: str, addresses: list[str]) -> list[x509.GeneralName]:
    """The API certificate's SANs from the PC's host name and addresses; CSRRefused when one is not acceptable."""
    host = hostname.strip().lower().rstrip(".")
    if "*" in host:
        raise CSRRefused(f"hostname {hostname!r}: a wildcard name is never signed; send this PC's own name")
    if not _HOSTNAME.match(host):
        raise CSRRefused(f"hostname {hostname!r} is not a DNS name (letters, digits, '-', dots)")
    names: list[x509.GeneralName] = [x509.DNSName(host)]
    seen = {host}
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError as err:
            raise CSRRefused(f"address {text!r} is not an IP address") from err
        if ip.is_unspecified or ip.is_multicast:
            raise CSRRefused(f"address {text!r} cannot be a server's address")
        if str(ip) not in seen:
            seen.add(str(ip))
            names.append(x509.IPAddress(ip))
    if len(names) > MAX_NAMES:
        raise CSRRefused(f"{len(names)} names (host name and addresses); at most {MAX_NAMES}")
    return names


@dataclass(frozen=True)
class Signed:
    """The two certificates for one store PC, PEM, with their serials (hex) for the hub's records."""

    mqtt_pem: str
    mqtt_serial: str
    api_pem: str
    api_serial: str


def sign_pair(ca: EnrollmentCA, store: str, mqtt_csr: x509.CertificateSigningRequest,
              api_csr: x509.CertificateSigningRequest, names: list[x509.GeneralName], now: datetime) -> Signed:
    """Sign the MQTT client and API server certificates; CSRRefused if the MQTT request is not for ``store``."""
    # A PC that does not know its store id yet sends no CN; one that names a store must name this code's.
    names_cn = mqtt_csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = _cn(mqtt_csr)
    if names_cn and cn != store:
        raise CSRRefused(f"mqtt_csr: its CN is {cn!r}, not the store this code is for ({store!r})")
    if mqtt_csr.public_key() == api_csr.public_key():
        raise CSRRefused("mqtt_csr and api_csr have one key; each certificate needs its own")
    mqtt = _build(ca, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, store)]), mqtt_csr, now,
                  ExtendedKeyUsageOID.CLIENT_AUTH, None)
    api_cn = names[0].value if isinstance(names[0], x509.DNSName) else store
    api = _build(ca, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(api_cn)),
                                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, store)]), api_csr, now,
                 ExtendedKeyUsageOID.SERVER_AUTH, names)
    pem = serialization.Encoding.PEM
    return Signed(mqtt.public_bytes(pem).decode(), format(mqtt.serial_number, "x"),
                  api.public_bytes(pem).decode(), format(api.serial_number, "x"))


def _build(ca: EnrollmentCA, subject: x509.Name, csr: x509.CertificateSigningRequest, now: datetime,
           usage: x509.ObjectIdentifier, names: list[x509.GeneralName] | None) -> x509.Certificate:
    key = csr.public_key()
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject).public_key(key)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=CERT_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)  # type: ignore[arg-type]
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    if names is not None:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(ca.key, hashes.SHA256())
