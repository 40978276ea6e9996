"""A real Mosquitto configured from the shipped example: systemd/mosquitto/.

``edge-hub.conf.example`` is rendered into the test's dir line by line (its
paths and ports replaced, nothing else), ``acl.example`` is copied byte for
byte, and the password file is written in Mosquitto's own format. So the
tests exercise exactly what an operator installs. A line the table below
expects but the example lacks is an error: editing the example means
updating the table, never silently testing something else.

Like support.mosquitto.Mosquitto: a subprocess on free loopback ports,
stopped by its PID.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import signal
import subprocess
from pathlib import Path

from support.agent import ROOT, free_port
from support.mosquitto import mosquitto_binary
from sync.localbroker import stop_process, wait_listening
from support.tls import KeyPair

EXAMPLE_DIR = ROOT / "systemd" / "mosquitto"
EXAMPLE_CONF = EXAMPLE_DIR / "edge-hub.conf.example"
EXAMPLE_ACL = EXAMPLE_DIR / "acl.example"


def password_line(user: str, password: str, salt: bytes | None = None) -> str:
    """One line of a Mosquitto 2.0 password file, as ``mosquitto_passwd`` writes it.

    ``$7$`` is PBKDF2-HMAC-SHA512 with 101 iterations and a 12-byte salt
    (mosquitto's src/password_mosq.c).
    """
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def render_conf(text: str, replace: dict[str, str]) -> str:
    """``text`` with each whole line that is a key of ``replace`` swapped for its value."""
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        if line in replace:
            seen.add(line)
            out.append(replace[line])
        else:
            out.append(line)
    missing = set(replace) - seen
    if missing:
        raise AssertionError(f"{EXAMPLE_CONF.name} no longer has the lines {sorted(missing)}; "
                             "update tests/support/secure_broker.py with its new paths")
    return "\n".join(out) + "\n"


class SecureBroker:
    """The example hub broker: ``port`` is the loopback plain listener, ``tls_port`` the TLS one."""

    def __init__(self, workdir: Path, users: dict[str, str], ca_file: Path, server: KeyPair,
                 require_certificate: bool = False, identity_as_username: bool = False,
                 username_as_clientid: bool = True):
        self.workdir = workdir
        self.users = users
        self.ca_file = ca_file
        self.server = server
        self.require_certificate = require_certificate
        self.identity_as_username = identity_as_username
        # False: the example as it was before the TLS listener bound client ids to logins (to show why it does).
        self.username_as_clientid = username_as_clientid
        self.port = free_port()
        self.tls_port = free_port()
        self.conf_path = workdir / "mosquitto.conf"
        self.acl_path = workdir / "edge-acl"
        self.passwd_path = workdir / "passwd"
        self.log_path = workdir / "mosquitto.log"
        # Config errors are printed before the log file is open.
        self.stderr_path = workdir / "mosquitto.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def _replacements(self) -> dict[str, str]:
        wd = self.workdir
        table = {
            "password_file /etc/mosquitto/passwd": f"password_file {self.passwd_path}",
            "acl_file /etc/mosquitto/edge-acl": f"acl_file {self.acl_path}",
            # As root Mosquitto would switch to the mosquitto user, who cannot
            # read the tmp dir; `user root` (or any user when not root) keeps it.
            "user mosquitto": f"user {getpass.getuser()}",
            "pid_file /run/mosquitto/mosquitto.pid": f"pid_file {wd}/mosquitto.pid",
            "persistence_location /var/lib/mosquitto/": f"persistence_location {wd}/",
            "log_dest file /var/log/mosquitto/mosquitto.log": f"log_dest file {self.log_path}",
            "listener 1883 127.0.0.1": f"listener {self.port} 127.0.0.1",
            "listener 8883": f"listener {self.tls_port} 127.0.0.1",
            "cafile /etc/mosquitto/certs/ca.crt": f"cafile {self.ca_file}",
            "certfile /etc/mosquitto/certs/hub.crt": f"certfile {self.server.cert}",
            "keyfile /etc/mosquitto/certs/hub.key": f"keyfile {self.server.key}",
        }
        if self.require_certificate:
            table["#require_certificate true"] = "require_certificate true"
        if self.identity_as_username:
            table["#use_identity_as_username true"] = "use_identity_as_username true"
        if not self.username_as_clientid:
            table["use_username_as_clientid true"] = "#use_username_as_clientid true"
        return table

    def start(self, timeout: float = 10.0) -> "SecureBroker":
        """Write the config, ACL and passwords, start the broker, return once both listeners accept."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_conf(EXAMPLE_CONF.read_text(), self._replacements()))
        self.acl_path.write_bytes(EXAMPLE_ACL.read_bytes())
        self.passwd_path.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)],
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        for port in (self.port, self.tls_port):
            wait_listening(self.proc, port, timeout, self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker by its PID."""
        stop_process(self.proc, sig)
        self.proc = None

    def log(self) -> str:
        """What the broker printed and logged so far."""
        return "".join(p.read_text(errors="replace") for p in (self.stderr_path, self.log_path) if p.exists())
