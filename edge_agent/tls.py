"""TLS for the local API: the server's SSL context, and what ``edge-agent check`` finds in its files.

``api.tls`` in devices.yaml names a PEM certificate (the server's, then any
intermediates), its PEM key, and optionally the CA whose certificates kiosks
present (mutual TLS). ``server_context`` builds what the daemon serves with:
TLS 1.2 or newer, HTTP/1.1 by ALPN, client certificates none, optional or
required. ``findings`` reads the same files the way the daemon will, plus the
dates and names of the certificate, and says what is wrong with each at its
key, so ``edge-agent check`` can print ``FILE:LINE``.

Only the standard library: ``ssl`` loads and matches key and certificate
(``load_cert_chain`` refuses a key that is not the certificate's), and
``ssl._ssl._test_decode_cert`` gives a certificate's dates and subject
alternative names (what ``SSLSocket.getpeercert`` returns, read from a file).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from edge_agent.config import ApiTlsConfig
    from edge_core.config_types import HostPort

# A certificate that ends sooner than this is reported by ``edge-agent check`` (as a warning).
RENEW_WITHIN_DAYS = 30

_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TlsFileError(Exception):
    """A file of ``api.tls`` cannot be used; ``key`` is which (``cert_file``, ``key_file``, ``client_ca_file``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"api.tls.{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Finding:
    """One thing ``edge-agent check`` says about ``api.tls``: at which key, what, and whether it stops the agent."""

    key: str
    message: str
    warning: bool = False


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's pass phrase.
    raise TlsFileError("key_file", "the key is encrypted with a pass phrase; the agent starts unattended, so store "
                                   "it unencrypted (openssl pkey -in KEY -out KEY.plain) with mode 0640")


def server_context(tls: ApiTlsConfig) -> ssl.SSLContext:
    """The SSL context the API serves with; TlsFileError naming the key whose file cannot be used."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    for key in ("cert_file", "key_file"):
        _readable(key, getattr(tls, key))
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except TlsFileError:
        raise
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err):
            raise TlsFileError("key_file", f"{tls.key_file} is not the key of {tls.cert_file}; give the key the "
                                           "certificate was issued for (or issue a certificate for this key)") from err
        if "PEM" in str(err) or "NO_START_LINE" in str(err):
            raise TlsFileError("cert_file", f"{tls.cert_file} with {tls.key_file}: not a PEM certificate and key "
                                            f"({err.reason or err}); both must be PEM files "
                                            "(-----BEGIN ...-----)") from err
        raise TlsFileError("key_file", f"cannot load {tls.key_file} for {tls.cert_file}: {err.reason or err}") from err
    if tls.client_ca_file is not None:
        _readable("client_ca_file", tls.client_ca_file)
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        except ssl.SSLError as err:
            raise TlsFileError("client_ca_file", f"{tls.client_ca_file} holds no PEM CA certificate "
                                                 f"({err.reason or err}); give the CA that issues the kiosks' "
                                                 "certificates") from err
    ctx.verify_mode = _VERIFY[getattr(tls.client_cert, "value", tls.client_cert)]
    return ctx


def _readable(key: str, path: Path) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise TlsFileError(key, f"cannot read {path}: {err.strerror}; create it or fix the path (the agent "
                                "runs as user edge-agent, which must be able to read it)") from err


def decode_cert(path: Path) -> dict:
    """The first certificate of a PEM file, as ``getpeercert()`` shows one (dates, subject, SANs)."""
    try:
        return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    except ssl.SSLError as err:
        raise TlsFileError("cert_file", f"{path} is not a PEM certificate ({err.reason or err}); give the "
                                        "server certificate (-----BEGIN CERTIFICATE-----)") from err


def san_covers(cert: dict, host: str) -> bool:
    """True if the certificate's subject alternative names cover ``host`` (an address or a name)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for kind, value in cert.get("subjectAltName", ()):
        if address is not None and kind == "IP Address":
            try:
                if ipaddress.ip_address(value.strip()) == address:
                    return True
            except ValueError:
                continue
        elif address is None and kind == "DNS":
            name, pattern = host.lower().rstrip("."), value.lower().rstrip(".")
            if name == pattern:
                return True
            if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
                return True
    return False


def _names(cert: dict) -> str:
    return ", ".join(v for _, v in cert.get("subjectAltName", ())) or "none"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def findings(tls: ApiTlsConfig, listen: HostPort, now: float | None = None) -> list[Finding]:
    """What is wrong with ``api.tls``'s files, or worth knowing, for the agent listening on ``listen``."""
    now = time.time() if now is None else now
    out: list[Finding] = []
    for key in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, key)
        if path is None:
            continue
        try:
            _readable(key, path)
        except TlsFileError as err:
            out.append(Finding(key, err.message))
    if out:
        return out
    if tls.client_cert == "optional":
        out.append(Finding("client_cert", "optional lets a client without a certificate in, as none does: it only "
                                          "refuses a certificate the CA did not sign; use it while kiosks get "
                                          "theirs, then required", warning=True))
    key_mode = os.stat(tls.key_file).st_mode
    if key_mode & stat.S_IROTH:
        out.append(Finding("key_file", f"{tls.key_file} is readable by every user of this PC; "
                                       f"chmod 640 {tls.key_file} and chown root:edge-agent {tls.key_file}",
                           warning=True))
    try:
        cert = decode_cert(tls.cert_file)
        server_context(tls)
    except TlsFileError as err:
        return out + [Finding(err.key, err.message)]
    not_before = ssl.cert_time_to_seconds(cert["notBefore"])
    not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    if now < not_before:
        out.append(Finding("cert_file", f"{tls.cert_file} is not valid before {_when(not_before)} (now "
                                        f"{_when(now)}); check this PC's clock, or issue the certificate again"))
    elif now > not_after:
        out.append(Finding("cert_file", f"{tls.cert_file} expired on {_when(not_after)}; renew it "
                                        "(docs/install.md, The API's certificate)"))
    elif not_after - now < RENEW_WITHIN_DAYS * 86_400:
        out.append(Finding("cert_file", f"{tls.cert_file} expires on {_when(not_after)}, in less than "
                                        f"{RENEW_WITHIN_DAYS} days; renew it", warning=True))
    if not cert.get("subjectAltName"):
        out.append(Finding("cert_file", f"{tls.cert_file} has no subject alternative names, and browsers and "
                                        "Python's ssl match names only there; issue it with subjectAltName = "
                                        f"IP:{listen.host} (or the PC's DNS name)"))
    elif listen.host in ("0.0.0.0", "::"):
        out.append(Finding("cert_file", f"api.listen {listen} is every address of this PC: clients must dial one of "
                                        f"the certificate's names ({_names(cert)})", warning=True))
    elif not san_covers(cert, listen.host):
        out.append(Finding("cert_file", f"{tls.cert_file} is for {_names(cert)}, not {listen.host} (api.listen): "
                                        "clients dialling it will refuse the certificate; issue one whose "
                                        f"subjectAltName has {listen.host}, or listen on an address it names"))
    return out
