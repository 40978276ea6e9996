"""Release bundles: the agent and its dependencies as wheels, with their hashes and an ed25519 signature; served by the hub.

``edge-hub release keygen --out DIR`` writes ``release.key`` (the private
key, PEM, 0600) and ``release.pub`` (the public key every store gets as
``updates.public_key_file``). ``edge-hub release build --version V --out
RELEASES --key KEY`` makes ``RELEASES/V/``: the wheels (``pip wheel`` of the
source tree, which builds the agent and fetches or builds every dependency;
with ``--wheelhouse DIR`` the wheels already in DIR, no network),
``manifest.json`` and ``manifest.sig`` (sync/bundle.py, sync/topics.py
"Updates"). A bundle is never overwritten: a new build is a new version.
``edge-hub release list`` shows the bundles of a releases folder.

``edge-hub run --http ... --releases RELEASES`` serves them to the stores:

| call | who | what |
|---|---|---|
| ``GET /releases/{version}/manifest.json`` | anyone who reaches the hub's server | the manifest |
| ``GET /releases/{version}/manifest.sig`` | same | its signature |
| ``GET /releases/{version}/{file}`` | same | a wheel the manifest names |

No request text is joined to a path: the version must match the version
pattern and be a folder of RELEASES, the file must be named in that
folder's manifest. The bundle is public by design (it is signed, and holds
no secret); anything else is 404.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sync import bundle, topics

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PRIVATE, PUBLIC = "release.key", "release.pub"
_VERSION_RE = re.compile(topics.VERSION_PATTERN)


def _err(msg: str) -> None:
    print(f"edge-hub: {msg}", file=sys.stderr)


# Keys and bundles -------------------------------------------------------------------------

def keygen(out: Path) -> tuple[Path, Path]:
    """A new key pair in ``out`` (created 0700 if missing); FileExistsError when a key is there already."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = bundle.new_key()
    key_path, pub_path = out / PRIVATE, out / PUBLIC
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pub_path.write_bytes(public)
    return key_path, pub_path


def _pip_wheels(source: Path, dest: Path) -> None:
    """``pip wheel`` of the source tree with its dependencies into ``dest`` (needs an index)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-input", "--disable-pip-version-check",
                           "-w", str(dest), str(source)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise bundle.BundleError(f"pip wheel {source} failed ({done.returncode}): {tail[:1000]}")


def build(version: str, out: Path, key_pem: bytes, wheelhouse: Path | None = None, source: Path | None = None,
          python: str | None = None) -> Path:
    """Make ``out/version/``: wheels, manifest.json, manifest.sig. BundleError when it cannot."""
    if not _VERSION_RE.match(version):
        raise bundle.BundleError(f"version {version!r} is not a release version such as 0.2.0")
    key = bundle.load_private(key_pem)
    target = out / version
    if target.exists():
        raise bundle.BundleError(f"{target} exists: a release is never rebuilt; give a new version")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out))
    try:
        if wheelhouse is not None:
            wheels = sorted(p for p in wheelhouse.iterdir() if p.is_file() and p.name.endswith(".whl"))
            for w in wheels:
                shutil.copyfile(w, work / w.name)
        else:
            _pip_wheels(source or Path.cwd(), work)
        names = sorted(p.name for p in work.iterdir() if p.name.endswith(".whl"))
        agents = [n for n in names if (bundle.wheel_of(n) or ("", ""))[0] == topics.AGENT_DISTRIBUTION]
        if [bundle.wheel_of(n) for n in agents] != [(topics.AGENT_DISTRIBUTION, version)]:
            found = ", ".join(agents) or "none"
            raise bundle.BundleError(f"the wheels must hold exactly one edge_agent-{version} wheel (found: {found}); "
                                     "build the agent's wheel with its version set to the release's")
        for n in names:
            if not re.match(topics.RELEASE_FILE_PATTERN, n):
                raise bundle.BundleError(f"{n}: a file name a store would refuse")
        manifest = topics.ReleaseManifest(
            version=version, created_at=datetime.now(timezone.utc),
            python=python or f"{sys.version_info.major}.{sys.version_info.minor}",
            files=[bundle.file_entry(work / n) for n in names],
            requires=f"{topics.AGENT_DISTRIBUTION}=={version}")
        data = bundle.manifest_bytes(manifest)
        (work / bundle.MANIFEST).write_bytes(data)
        (work / bundle.SIGNATURE).write_bytes(bundle.sign(key, data))
        os.chmod(work, 0o755)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def read_manifest(home: Path) -> topics.ReleaseManifest:
    """The manifest of the bundle in ``home``; BundleError when it is missing or wrong."""
    try:
        data = (home / bundle.MANIFEST).read_bytes()
    except OSError as err:
        raise bundle.BundleError(f"{home / bundle.MANIFEST}: {err.strerror or err}") from err
    return bundle.parse_manifest(data)


def listing(releases: Path) -> list[dict[str, Any]]:
    """Each bundle of ``releases``: version, files, bytes, created_at, signed; oldest first."""
    rows = []
    for home in sorted(releases.iterdir()) if releases.is_dir() else []:
        if not home.is_dir() or not _VERSION_RE.match(home.name):
            continue
        try:
            m = read_manifest(home)
        except bundle.BundleError as err:
            rows.append({"version": home.name, "problem": str(err)})
            continue
        rows.append({"version": m.version, "files": len(m.files), "bytes": sum(f.size for f in m.files),
                     "created_at": m.created_at.isoformat(timespec="seconds"),
                     "signed": (home / bundle.SIGNATURE).is_file()})
    rows.sort(key=lambda r: r.get("created_at", ""))
    return rows


# Serving ------------------------------------------------------------------------------------

def mount(app: Any, releases: Path | None) -> None:
    """``GET /releases/{version}/{name}`` from ``releases`` (nothing when None)."""
    if releases is None:
        return
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import FileResponse

    root = Path(releases)
    router = APIRouter(tags=["releases"])

    @router.get("/releases/{version}/{name}")
    async def release_file(version: str, name: str) -> FileResponse:
        """A bundle's manifest.json, manifest.sig or a wheel its manifest names."""
        if not _VERSION_RE.match(version):
            raise HTTPException(404, "no such release")
        home = root / version
        if not home.is_dir():
            raise HTTPException(404, "no such release")
        if name in (bundle.MANIFEST, bundle.SIGNATURE):
            path = home / name
        else:
            try:
                files = {f.name: f for f in read_manifest(home).files}
            except bundle.BundleError:
                raise HTTPException(404, "no such release") from None
            if name not in files:
                raise HTTPException(404, "no such file in this release")
            path = home / files[name].name  # the manifest's own text, not the request's
        if not path.is_file():
            raise HTTPException(404, "no such file in this release")
        media = "application/json" if name == bundle.MANIFEST else "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    app.include_router(router)


# Commands -------------------------------------------------------------------------------------

def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        key, pub = keygen(Path(args.out))
    except FileExistsError:
        _err(f"{Path(args.out) / PRIVATE} exists; a new key would leave every store unable to verify releases")
        return EXIT_USAGE
    print(f"private key {key} (0600: keep it on the machine that builds releases)")
    print(f"public key  {pub} (to every store as updates.public_key_file)")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    try:
        key_pem = Path(args.key).read_bytes()
        target = build(args.version, Path(args.out), key_pem,
                       wheelhouse=Path(args.wheelhouse) if args.wheelhouse else None,
                       source=Path(args.source) if args.source else None, python=args.python)
    except bundle.BundleError as err:
        _err(str(err))
        return EXIT_USAGE
    m = read_manifest(target)
    print(f"release {m.version} in {target}: {len(m.files)} wheels, {sum(f.size for f in m.files)} bytes, signed")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    rows = listing(Path(args.releases))
    if not rows:
        print(f"no release in {args.releases}")
        return EXIT_OK
    print(f"{'version':<16} {'files':>5} {'MB':>8}  {'created':<25} signed")
    for r in rows:
        if "problem" in r:
            print(f"{r['version']:<16} {r['problem']}")
            continue
        print(f"{r['version']:<16} {r['files']:>5} {r['bytes'] / 1e6:>8.1f}  {r['created_at']:<25} "
              f"{'yes' if r['signed'] else 'NO'}")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of release bundles."""
    env_releases = os.environ.get("EDGE_HUB_RELEASES") or "releases"
    release = sub.add_parser("release", help="signed release bundles of the agent: keys, build, list")
    verbs = release.add_subparsers(dest="verb", required=True)
    keygen_p = verbs.add_parser("keygen", help="a new ed25519 key pair: release.key (0600) and release.pub")
    keygen_p.add_argument("--out", required=True, metavar="DIR")
    keygen_p.set_defaults(func=cmd_keygen)
    build_p = verbs.add_parser("build", help="RELEASES/V: the agent's and its dependencies' wheels, manifest, signature")
    build_p.add_argument("--version", required=True, metavar="V", help="the release version; the agent's wheel's own")
    build_p.add_argument("--out", default=env_releases, metavar="RELEASES",
                         help=f"the releases folder (default {env_releases}; $EDGE_HUB_RELEASES)")
    build_p.add_argument("--key", required=True, metavar="KEY", help="the private key from edge-hub release keygen")
    build_p.add_argument("--wheelhouse", default=None, metavar="DIR",
                         help="take the wheels in DIR (the agent's and every dependency's) instead of running pip wheel")
    build_p.add_argument("--source", default=None, metavar="DIR",
                         help="the agent's source tree for pip wheel (default: the current folder)")
    build_p.add_argument("--python", default=None, metavar="3.X",
                         help="the Python the stores run (default: this one's)")
    build_p.set_defaults(func=cmd_build)
    list_p = verbs.add_parser("list", help="the bundles of a releases folder")
    list_p.add_argument("--releases", default=env_releases, metavar="RELEASES")
    list_p.set_defaults(func=cmd_list)
