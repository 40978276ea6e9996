"""A device kind is its folder, its tests and one registry line: shown on the pole display.

Two checks. No module outside ``drivers/display/`` imports it but the
registry, and no code outside it names its kind. And the stronger one: a copy
of the source tree without ``drivers/display/`` and without its registry line
still builds the agent's app, its config model and the demo, with every other
kind in place; so adding the kind back is exactly that folder and that line.
Kinds the agent has domain services for (printing for printers, labels for
shelf labels, scans for scanners, the mirror's page) are used by those
services, as the layers allow; the pole display needs none.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("edge_core", "edge_agent", "drivers", "sync", "ar_mirror")
KIND, FOLDER, PACKAGE = "display.pole", REPO / "drivers" / "display", "drivers.display"
REGISTRY = REPO / "drivers" / "registry.py"


def _code_files() -> list[Path]:
    return [p for top in SOURCES for p in (REPO / top).rglob("*.py")
            if FOLDER not in p.parents and p != REGISTRY and "__pycache__" not in p.parts]


def test_nothing_but_the_registry_imports_the_pole_display():
    importers = []
    for path in _code_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == PACKAGE or n.startswith(PACKAGE + ".") for n in names):
                importers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert importers == []
    lines = [line for line in REGISTRY.read_text(encoding="utf-8").splitlines() if PACKAGE + "." in line]
    assert len(lines) == 1, lines


def test_no_code_outside_its_folder_names_the_kind():
    named = []
    for path in _code_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and KIND in node.value:
                named.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert named == []


def test_the_tree_without_the_pole_display_still_builds_the_agent(tmp_path):
    for top in SOURCES:
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(tmp_path / "drivers" / "display")
    registry = tmp_path / "drivers" / "registry.py"
    kept = [line for line in registry.read_text(encoding="utf-8").splitlines(keepends=True) if PACKAGE + "." not in line]
    registry.write_text("".join(kept), encoding="utf-8")
    probe = (
        # The editable install's finder would fill a missing module in from this checkout: without it, only the copy.
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]\n"
        "import drivers.registry as r, edge_agent.api.app, edge_agent.config, edge_agent.demo\n"
        "import edge_core, sync\n"
        "for m in (r, edge_agent.api.app, edge_agent.demo, edge_core, sync):\n"
        "    assert m.__file__.startswith(%r), m.__file__\n"
        "kinds = r.drivers()\n"
        "assert %r not in kinds, kinds\n"
        "assert {'printer.escpos', 'scanner.serial', 'shelf_label.oepl', 'mirror.camera'} <= set(kinds), kinds\n"
        "print(len(kinds))\n"
    ) % (str(tmp_path), KIND)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == len(kinds_here()) - 1


def kinds_here() -> dict:
    from drivers.registry import drivers
    return drivers()
