"""docs/configuration.md is generated from the config tree by scripts/config_reference.py: it must be
current, list every key `kale-ray config keys` lists, and show nothing of the machine that made it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from kale_ray.config import describe_keys

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "configuration.md"
STALE = "docs/configuration.md is stale: run `python scripts/config_reference.py`"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_page_is_current():
    assert PAGE.read_text() == _generator().render(), STALE


def test_reference_lists_every_key():
    page = PAGE.read_text()
    missing = [key for key, *_ in describe_keys() if f"| `{key}` |" not in page]
    assert missing == [], STALE


def _render_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    machine = tmp_path / name
    (machine / "work").mkdir(parents=True)
    for var in ("KALE_DATA", "KALE_CACHE", "HOME"):
        monkeypatch.setenv(var, str(machine / var.lower()))
    monkeypatch.chdir(machine / "work")
    return _generator().render()


def test_reference_is_the_same_on_every_machine(tmp_path, monkeypatch):
    """Defaults that the environment or the checkout's place decides (data_root) are shown in words:
    two machines with different data, cache, home and working directories render the same page, and
    neither the repository's nor the environment's paths appear in it."""
    one = _render_on(tmp_path, monkeypatch, "one")
    two = _render_on(tmp_path, monkeypatch, "two")
    assert one == two
    for local in (str(tmp_path), str(REPO)):
        assert local not in one
