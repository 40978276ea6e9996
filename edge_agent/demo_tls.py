"""The demo store's certificates: a CA of its own and a server certificate for the API, made with the openssl CLI.

``make run`` serves the API on HTTPS and WSS like a store does; a store gets
its certificate from the chain's CA (docs/install.md), the demo makes a CA in
``.run/tls/`` on first run and keeps it while it is valid, so a browser or a
curl told to trust ``.run/tls/ca.crt`` once keeps trusting it. The server
certificate names the listen address, 127.0.0.1 and localhost (and, when
the API listens on every address, this PC's host name and its address on the
local network, ``lan_address``, which a phone on the same Wi-Fi uses); it is
made again when it would expire within 30 days, when it does not name the
listen address or that LAN address, or when the CA changed. EC P-256 keys,
mode 0600, in a 0700 directory.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent import tls
from edge_agent.config import ApiTlsConfig
from edge_core.config_types import HostPort

CA_DAYS = 3650
SERVER_DAYS = 365

_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {san}
"""


@dataclass(frozen=True)
class DemoTls:
    """Where the demo's CA certificate and the API's certificate and key are."""

    ca: Path
    cert: Path
    key: Path

    def api_tls(self) -> ApiTlsConfig:
        """The ``api.tls`` section for these files."""
        return ApiTlsConfig(cert_file=self.cert, key_file=self.key)


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise SystemExit("the openssl command is not installed (apt-get install openssl); the demo's HTTPS needs it")
    res = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"openssl {args[0]} failed making the demo's certificates: {res.stderr.strip()}")


def _valid_for(path: Path, seconds: float) -> bool:
    """True if the certificate at ``path`` can be read and stays valid for ``seconds`` more."""
    try:
        cert = tls.decode_cert(path)
    except (tls.TlsFileError, OSError):
        return False
    now = time.time()
    return (ssl.cert_time_to_seconds(cert["notBefore"]) <= now
            and ssl.cert_time_to_seconds(cert["notAfter"]) - now > seconds)


EVERY_ADDRESS = ("0.0.0.0", "::")


def lan_address() -> str | None:
    """This PC's IPv4 address on its local network (the one its default route leaves from), or None.

    A UDP socket "connected" to a documentation address sends nothing; the
    kernel only picks the source address a packet there would have.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _names(listen: HostPort, lan: str | None = None) -> list[str]:
    """The subjectAltName entries: the listen address, loopback, and for 0.0.0.0 the host name and ``lan``."""
    names = ["IP:127.0.0.1", "DNS:localhost"]
    if listen.host in EVERY_ADDRESS:
        names.append(f"DNS:{socket.gethostname()}")
        if lan is not None:
            names.append(f"IP:{lan}")
    else:
        try:
            names.append(f"IP:{ipaddress.ip_address(listen.host)}")
        except ValueError:
            names.append(f"DNS:{listen.host}")
    return list(dict.fromkeys(names))


def _signed_by(cert: Path, ca: Path) -> bool:
    binary = shutil.which("openssl")
    return binary is not None and subprocess.run(
        [binary, "verify", "-CAfile", str(ca), str(cert)], capture_output=True).returncode == 0


def ensure_tls(directory: Path, listen: HostPort, lan: str | None = None) -> DemoTls:
    """The demo's CA and the API's certificate for ``listen`` in ``directory``: kept if still good, else made.

    ``lan``: the LAN address the certificate names too when ``listen`` is every address."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    made = DemoTls(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    ca_key = directory / "ca.key"
    cnf = directory / "openssl.cnf"
    cnf.write_text(_CNF.format(san=", ".join(_names(listen, lan))))
    old = os.umask(0o077)
    try:
        if not (ca_key.exists() and _valid_for(made.ca, 30 * 86_400)):
            _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", ca_key, "-out", made.ca, "-days", str(CA_DAYS),
                     "-subj", "/CN=edge-agent demo CA (make run)", "-config", cnf, "-extensions", "ca")
        good = (made.key.exists() and _valid_for(made.cert, tls.RENEW_WITHIN_DAYS * 86_400)
                and _signed_by(made.cert, made.ca)
                and all(tls.san_covers(tls.decode_cert(made.cert), h) for h in ("127.0.0.1", "localhost"))
                and (listen.host in EVERY_ADDRESS or tls.san_covers(tls.decode_cert(made.cert), listen.host))
                and (listen.host not in EVERY_ADDRESS or lan is None or tls.san_covers(tls.decode_cert(made.cert), lan)))
        if not good:
            csr = directory / "server.csr"
            _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", made.key, "-out", csr, "-subj", "/CN=edge-agent demo API", "-config", cnf)
            _openssl("x509", "-req", "-in", csr, "-CA", made.ca, "-CAkey", ca_key, "-CAcreateserial",
                     "-CAserial", directory / "ca.srl", "-out", made.cert, "-days", str(SERVER_DAYS),
                     "-extfile", cnf, "-extensions", "server")
            csr.unlink()
    finally:
        os.umask(old)
    return made
