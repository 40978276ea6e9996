"""``edge-agent enroll``: a fresh store PC gets its identity, MQTT credentials, API certificate and devices.yaml.

From a one-time code the hub issued (``edge-hub enroll-code``). Keys never
travel: this PC makes two EC P-256 keys (mode 0600), sends certificate
signing requests for them with the code to the hub's ``POST /enroll``, and
gets back its store id, the broker's address and CA, the MQTT client
certificate (CN = the store id: the broker's login), the local API's server
certificate and its CA, and the store's first devices.yaml.

The answer is checked before anything is written: each certificate is for
this PC's key, the MQTT one names the store, the API one was issued by the
CA sent with it, and the devices.yaml (its ``hub:`` section and ``api.tls``
filled in here) passes what ``edge-agent check`` runs. Then the files land
atomically: the credentials beside the config in ``tls/``, the config last.
A config or credential file that exists is left alone unless ``force``.

An ``http://`` hub is refused unless it is this PC (loopback): the code would
cross the network in clear, and whoever read it could enroll in its place.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.hosts import is_loopback

MAX_ANSWER = 1024 * 1024  # the answer is two certificates, two CAs and a devices.yaml (at most 256 KiB)
TIMEOUT_S = 30.0
AGENT_USER = "edge-agent"  # who runs the agent (systemd/edge-agent.sysusers.conf): it must read the keys

# What lands in the config's directory, under tls/.
FILES = {"hub_ca": "hub-ca.crt", "mqtt_key": "mqtt.key", "mqtt_cert": "mqtt.crt",
         "api_key": "api.key", "api_cert": "api.crt", "api_ca": "api-ca.crt"}


class EnrollFailed(Exception):
    """Enrollment stopped; the message says why and what to do. ``code_used``: the hub consumed the code."""

    def __init__(self, message: str, *, code_used: bool = False):
        super().__init__(message)
        self.code_used = code_used


@dataclass
class Enrolled:
    """What enrollment wrote."""

    store: str
    broker: str
    config: Path
    files: dict[str, Path] = field(default_factory=dict)


def check_hub_url(url: str) -> str:
    """The hub's base URL; EnrollFailed for anything but https://, or http:// to this PC."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollFailed(f"--hub {url!r}: give the hub's address as https://HOST[:PORT]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise EnrollFailed(f"--hub {url!r}: no user, query or fragment; only https://HOST[:PORT][/PATH]")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise EnrollFailed(f"--hub {url!r} is http://: the enrollment code and this PC's certificates would cross the "
                           "network in clear, and whoever read the code could enroll in this PC's place; use "
                           "https:// (http:// only to a hub on this PC)")
    return url.rstrip("/")


def local_names(hub_url: str, extra: list[str]) -> tuple[str, list[str]]:
    """This PC's host name and the addresses its API certificate names: loopback, the one facing the hub, extras."""
    hostname = socket.gethostname().lower()
    addresses = ["127.0.0.1"]
    host = urlsplit(hub_url).hostname or ""
    if not is_loopback(host):
        try:
            # A UDP socket's connect only picks the route: nothing is sent.
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((host, 443))
                addresses.append(s.getsockname()[0])
        except OSError:
            pass  # no route found; --address names it
    for a in extra:
        if a not in addresses:
            addresses.append(a)
    return hostname, addresses


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _csr(key: ec.EllipticCurvePrivateKey, cn: str | None) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _post(url: str, body: dict[str, Any], cafile: str | None) -> dict[str, Any]:
    context = None
    if url.startswith("https://"):
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as err:
            raise EnrollFailed(f"cannot read --cafile {cafile}: {getattr(err, 'strerror', None) or err}") from err
    req = urllib.request.Request(url + "/enroll", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=context) as resp:
            raw = resp.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as err:
        detail = err.read(4096).decode(errors="replace")
        try:
            detail = str(json.loads(detail).get("detail", detail))
        except (ValueError, AttributeError):
            pass
        hint = {404: " (is the hub run with --enroll-ca?)", 429: f" (retry after {err.headers.get('Retry-After')} s)"}
        raise EnrollFailed(f"the hub refused ({err.code}): {detail}{hint.get(err.code, '')}") from err
    except (urllib.error.URLError, OSError) as err:
        raise EnrollFailed(f"cannot reach the hub at {url}: {getattr(err, 'reason', err)}") from err
    if len(raw) > MAX_ANSWER:
        raise EnrollFailed(f"the hub's answer has more than {MAX_ANSWER} bytes; is {url} the hub?", code_used=True)
    try:
        answer = json.loads(raw)
    except ValueError as err:
        raise EnrollFailed(f"the hub's answer is not JSON; is {url} the hub?", code_used=True) from err
    keys = ("store", "broker", "ca_pem", "mqtt_cert_pem", "api_cert_pem", "api_ca_pem", "devices_yaml")
    if not isinstance(answer, dict) or not all(isinstance(answer.get(k), str) for k in keys):
        raise EnrollFailed(f"the hub's answer lacks {', '.join(keys)}", code_used=True)
    return answer


def _cert(pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as err:
        raise EnrollFailed(f"the hub sent no PEM certificate as {what}", code_used=True) from err


def check_answer(answer: dict[str, Any], mqtt_key: ec.EllipticCurvePrivateKey, api_key: ec.EllipticCurvePrivateKey,
                 store: str | None) -> None:
    """EnrollFailed unless the certificates are for these keys and this store, the API's from the CA sent."""
    bad = lambda why: EnrollFailed(f"the hub's answer does not hold: {why}; nothing was written", code_used=True)  # noqa: E731
    got = answer["store"]
    if store is not None and got != store:
        raise bad(f"the code is for store {got!r}, not {store!r}")
    mqtt, api = _cert(answer["mqtt_cert_pem"], "mqtt_cert_pem"), _cert(answer["api_cert_pem"], "api_cert_pem")
    api_ca, _ = _cert(answer["api_ca_pem"], "api_ca_pem"), _cert(answer["ca_pem"], "ca_pem")
    if mqtt.public_key() != mqtt_key.public_key():
        raise bad("the MQTT certificate is not for this PC's key")
    if api.public_key() != api_key.public_key():
        raise bad("the API certificate is not for this PC's key")
    cns = [str(a.value) for a in mqtt.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [got]:
        raise bad(f"the MQTT certificate's CN is {cns}, not the store id {got!r} (the broker's login)")
    try:
        api.verify_directly_issued_by(api_ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise bad("the API certificate was not issued by the api_ca_pem sent with it") from err
    if not answer["broker"].startswith("mqtts://"):
        raise bad(f"the broker {answer['broker']!r} is not mqtts://")


def build_config(devices_yaml: str, broker: str, files: dict[str, Path]) -> str:
    """The store's devices.yaml with ``hub:`` pointing at the broker by certificate, and ``api.tls`` filled in."""
    try:
        data = yaml.safe_load(devices_yaml)
    except yaml.YAMLError as err:
        raise EnrollFailed(f"the hub's devices.yaml is not valid YAML: {err}", code_used=True) from err
    if not isinstance(data, dict):
        raise EnrollFailed("the hub's devices.yaml is not a mapping", code_used=True)
    hub = {k: v for k, v in (data.get("hub") or {}).items()
           if k not in ("url", "username", "password_file", "allow_plaintext_password")}
    data["hub"] = {"url": broker, "ca_file": str(files["hub_ca"]), "cert_file": str(files["mqtt_cert"]),
                   "key_file": str(files["mqtt_key"]), **{k: v for k, v in hub.items()
                                                          if k not in ("ca_file", "cert_file", "key_file")}}
    api = data.get("api") or {}
    tls = {k: v for k, v in (api.get("tls") or {}).items() if k not in ("cert_file", "key_file")}
    api["tls"] = {"cert_file": str(files["api_cert"]), "key_file": str(files["api_key"]), **tls}
    data["api"] = api
    return ("# Written by `edge-agent enroll` from the hub's devices.yaml for this store; hub: and api.tls\n"
            "# point at the credentials in tls/ beside this file.\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _validate(config_text: str, path: Path) -> list[str]:
    """What ``edge-agent check`` would say about ``config_text`` saved at ``path`` (its problems)."""
    from edge_agent import config
    from edge_core.errors import ConfigError

    path.write_text(config_text, encoding="utf-8")
    try:
        cfg = config.load(path)
    except ConfigError as err:
        return list(err.problems)
    return config.file_problems(path, cfg)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if owner is not None:
        os.chown(path, *owner)


def _agent_owner() -> tuple[int, int] | None:
    """The agent's user and group when this runs as root and the user exists (it must read its keys)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pw = pwd.getpwnam(AGENT_USER)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def enroll(hub_url: str, code: str, config_path: Path, data_dir: Path, *, cafile: str | None = None,
           store: str | None = None, force: bool = False, hostname: str | None = None,
           addresses: list[str] | None = None) -> Enrolled:
    """Enroll this PC; EnrollFailed (with what to do) when it cannot."""
    base = check_hub_url(hub_url)
    tls_dir = config_path.parent / "tls"
    final = {name: tls_dir / f for name, f in FILES.items()}
    existing = [p for p in (config_path, *final.values()) if p.exists()]
    if existing and not force:
        raise EnrollFailed(f"{', '.join(map(str, existing))} already exist{'s' if len(existing) == 1 else ''}: this "
                           "PC looks enrolled or configured; pass --force to replace them (the code is not used)")
    host, addrs = local_names(base, addresses or [])
    host = (hostname or host).lower()
    mqtt_key, api_key = _new_key(), _new_key()
    answer = _post(base, {"code": code, "mqtt_csr": _csr(mqtt_key, store), "api_csr": _csr(api_key, None),
                          "hostname": host, "addresses": addrs}, cafile)
    check_answer(answer, mqtt_key, api_key, store)
    owner = _agent_owner()
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    if owner is not None:
        os.chown(tls_dir, 0, owner[1])
    staging = Path(tempfile.mkdtemp(prefix=".enroll-", dir=tls_dir))
    try:
        staged = {name: staging / f for name, f in FILES.items()}
        contents = {"hub_ca": answer["ca_pem"].encode(), "mqtt_cert": answer["mqtt_cert_pem"].encode(),
                    "api_cert": answer["api_cert_pem"].encode(), "api_ca": answer["api_ca_pem"].encode(),
                    "mqtt_key": _key_pem(mqtt_key), "api_key": _key_pem(api_key)}
        for name, data in contents.items():
            # Keys: the agent's own, 0600. The rest root:edge-agent, as docs/install.md installs them.
            key = name.endswith("_key")
            _write(staged[name], data, 0o600 if key else 0o644,
                   owner if key or owner is None else (0, owner[1]))
        problems = _validate(build_config(answer["devices_yaml"], answer["broker"], staged), staging / "devices.yaml")
        if problems:
            raise EnrollFailed("the store's devices.yaml from the hub does not pass `edge-agent check`; nothing was "
                               "written; fix it at the hub and issue a new code:\n  "
                               + "\n  ".join(p.replace(str(staging / "devices.yaml"), "devices.yaml")
                                             for p in problems), code_used=True)
        for name in FILES:
            os.replace(staged[name], final[name])
        text = build_config(answer["devices_yaml"], answer["broker"], final)
        tmp = staging / "devices.yaml"
        tmp.unlink()
        _write(tmp, text.encode(), 0o640, None if owner is None else (0, owner[1]))
        config_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, config_path)
        dir_fd = os.open(tls_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        for p in staging.iterdir():
            p.unlink()
        staging.rmdir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    if owner is not None:
        os.chown(data_dir, *owner)
    return Enrolled(answer["store"], answer["broker"], config_path, final)
