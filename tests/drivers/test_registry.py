"""The registry is the one map from ``kind`` to driver: nothing is left out of it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

import pytest
import yaml

import drivers.base
from drivers.base import DeviceConfig, Driver
from drivers.registry import drivers as registered

REPO = Path(__file__).resolve().parents[2]
# The package's directory, taken from a module file: with tests/ on sys.path
# (pyproject's pythonpath) and an editable install, ``import drivers`` can
# bind the name to the tests/drivers folder as a namespace package, whose
# __path__ is the wrong place to walk.
DRIVERS_DIR = Path(drivers.base.__file__).resolve().parent


def _driver_classes() -> list[type[Driver]]:
    """Every concrete Driver subclass defined in any module under drivers/."""
    found: list[type[Driver]] = []
    for info in pkgutil.walk_packages([str(DRIVERS_DIR)], prefix="drivers."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, Driver) and obj is not Driver and obj.__module__ == module.__name__
                    and not inspect.isabstract(obj)):
                found.append(obj)
    return found


def test_the_walk_finds_drivers():
    assert DRIVERS_DIR == REPO / "drivers"
    assert _driver_classes(), "no driver found under drivers/: the walk itself is broken"


@pytest.mark.parametrize("cls", _driver_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_driver_module_is_registered(cls):
    assert registered().get(cls.kind) is cls, f"add {cls.__name__} to _DRIVERS in drivers/registry.py"


def test_kinds_are_unique():
    classes = _driver_classes()
    kinds = [c.kind for c in classes]
    assert len(kinds) == len(set(kinds)), kinds
    assert len(registered()) == len(classes)


@pytest.mark.parametrize("kind", sorted(registered()))
def test_each_kind_declares_a_strict_config(kind):
    cls = registered()[kind]
    assert issubclass(cls.Config, DeviceConfig)
    assert cls.Config.model_config.get("extra") == "forbid"
    annotation = cls.Config.model_fields["kind"].annotation
    assert typing.get_origin(annotation) is typing.Literal and typing.get_args(annotation) == (kind,)
    assert isinstance(cls.capabilities, frozenset)


def _devices_yaml() -> list[dict]:
    return yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))["devices"]


def test_every_kind_in_devices_yaml_resolves():
    devices = _devices_yaml()
    assert devices, "devices.yaml lists no devices"
    unknown = sorted({d["kind"] for d in devices} - set(registered()))
    assert not unknown, f"devices.yaml uses kinds no driver declares: {unknown}"


def test_every_device_in_devices_yaml_validates_with_its_driver():
    for entry in _devices_yaml():
        cfg = registered()[entry["kind"]].Config.model_validate(entry)
        assert cfg.id == entry["id"]
