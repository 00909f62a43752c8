"""The import layers of ``pyproject.toml`` ``[tool.importlinter]`` hold (see docs/architecture.md).

Runs ``lint-imports`` on this checkout's ``src/`` in a subprocess (so CI checks the contracts with the tests);
skipped when import-linter (``dev`` extra) is not installed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    pytest.importorskip("importlinter")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    proc = subprocess.run([sys.executable, "-c", code, "--no-cache"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_contracts_cover_the_issue_rules():
    """The rules of the architecture are configured (a deleted contract would otherwise pass silently)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(REPO / "pyproject.toml", "rb") as f:
        cfg = tomllib.load(f)["tool"]["importlinter"]
    contracts = {c["id"]: c for c in cfg["contracts"]}
    assert set(contracts) >= {"layers", "tasks-protected", "no-lightning", "io-media-only", "no-root-import"}
    level = {m.strip("() "): i for i, layer in enumerate(contracts["layers"]["layers"]) for m in layer.split("|")}
    assert level["mien.cli"] < level["mien.pipelines"] < level["mien.heads"] < level["mien.models"]
    assert level["mien.models"] < level["mien.face"] == level["mien.io"]
    assert level["mien.pipelines"] < min(level["mien.results"], level["mien.data"])
    assert level["mien.results"] < level["mien.io"]
    assert contracts["tasks-protected"]["allowed_importers"] == ["mien.cli.train", "mien.export"]
