"""Throwaway X.509 certificates for TLS tests, made with the ``openssl`` CLI.

A test makes its own CA in its tmp dir, a server certificate for 127.0.0.1
and localhost, and client certificates whose CN is a store id (Mosquitto's
``use_identity_as_username`` takes the user name from it). EC P-256 keys: a
whole set takes a few tens of milliseconds. Nothing leaves the tmp dir.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# One config for every certificate: the extensions sections are picked by
# -extensions/-extfile. Python's ssl (and OpenSSL 3's strict mode) want a
# CA with keyCertSign and key identifiers, and a server SAN for the address
# the client dials.
_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {san}
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl_binary() -> str:
    """Path of the openssl CLI (Debian's ``openssl`` package, a dependency of ca-certificates)."""
    path = shutil.which("openssl")
    if path is None:
        raise RuntimeError("the openssl command is not installed: `apt-get install openssl`")
    return path


def _openssl(*args: str | Path) -> None:
    res = subprocess.run([openssl_binary(), *map(str, args)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args[:2]))} failed:\n{res.stderr}")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path


class CertAuthority:
    """A self-signed CA in ``workdir`` that issues server and client certificates."""

    def __init__(self, workdir: Path, name: str = "edge test CA"):
        self.workdir = workdir
        self.name = name
        self.cert = workdir / "ca.crt"
        self.key = workdir / "ca.key"
        self._cnf = workdir / "openssl.cnf"
        self._serial = workdir / "ca.srl"

    def create(self) -> "CertAuthority":
        """Write the CA's key and certificate, valid for a day."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._cnf.write_text(_OPENSSL_CNF.format(san="DNS:unused"))
        _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", self.key, "-out", self.cert, "-days", "1", "-subj", f"/CN={self.name}",
                 "-config", self._cnf, "-extensions", "ca")
        return self

    def issue(self, cn: str, kind: str, san: str = "IP:127.0.0.1, DNS:localhost",
              dates: tuple[str, str] | None = None) -> KeyPair:
        """A certificate for ``cn`` signed by this CA, valid for a day from now.

        ``kind`` is ``server`` (for the hosts in ``san``) or ``client``.
        ``dates`` (``YYYYMMDDHHMMSSZ``, from and until) makes one valid then
        instead, e.g. one that has expired: ``openssl ca`` signs it, as
        ``openssl x509 -req`` (OpenSSL 3.0) can only count days from now.
        """
        if kind not in ("server", "client"):
            raise ValueError(f"kind must be 'server' or 'client', not {kind!r}")
        pair = KeyPair(self.workdir / f"{cn}.crt", self.workdir / f"{cn}.key")
        csr = self.workdir / f"{cn}.csr"
        ext = self.workdir / f"{cn}.ext"
        ext.write_text(_OPENSSL_CNF.format(san=san))
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", pair.key, "-out", csr, "-subj", f"/CN={cn}", "-config", self._cnf)
        if dates is None:
            _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                     "-CAserial", self._serial, "-CAcreateserial", "-out", pair.cert, "-days", "1",
                     "-extfile", ext, "-extensions", kind)
        else:
            self._sign_dated(csr, pair.cert, ext, kind, dates)
        csr.unlink()
        ext.unlink()
        return pair

    def _sign_dated(self, csr: Path, out: Path, ext: Path, kind: str, dates: tuple[str, str]) -> None:
        db = self.workdir / "ca-db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").touch()
        serial = db / "serial"
        if not serial.exists():
            serial.write_text("1000\n")
        cnf = db / "ca.cnf"
        cnf.write_text(f"[dated]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\nserial = {serial}\n"
                       "default_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n"
                       "[any]\ncommonName = supplied\n")
        _openssl("ca", "-batch", "-config", cnf, "-name", "dated", "-cert", self.cert, "-keyfile", self.key,
                 "-in", csr, "-out", out, "-notext", "-startdate", dates[0], "-enddate", dates[1],
                 "-extfile", ext, "-extensions", kind)
