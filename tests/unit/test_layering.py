"""The package layering of docs/architecture.md holds: the import-linter contracts in pyproject.toml
(no cycles at any depth, the layers, and the forbidden imports) pass on the code as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.lower() or " 0 broken" in out.stdout.lower(), out.stdout[-3000:]


def test_a_broken_contract_is_reported(tmp_path):
    """The check can fail: a contract the code breaks (kale_ray.kg importing kale_ray.config is
    allowed; forbidding it must be caught)."""
    config = tmp_path / "contracts.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["kale_ray"]\n\n'
                      '[[tool.importlinter.contracts]]\nname = "kg without config"\ntype = "forbidden"\n'
                      'source_modules = ["kale_ray.kg"]\nforbidden_modules = ["kale_ray.config"]\n')
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "BROKEN" in out.stdout, out.stdout[-3000:]
