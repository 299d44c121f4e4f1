"""Meta-tests that keep the public surface honest: exports, docs and commands stay in step."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from import_graph import CONFIG_MODELS, FORBIDDEN, LEAVES, core_graph, cycles, offenders

from trailrelay.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module",
    [
        "trailrelay.api",
        "trailrelay.contract",
        "trailrelay.errors",
        "trailrelay.helpers",
        "trailrelay.record",
        "trailrelay.testing",
    ],
)
def test_all_lists_exactly_the_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    public = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and (getattr(value, "__module__", module) == module or name in mod.__all__)
        and name != "annotations"
    }
    declared = set(mod.__all__)
    assert declared <= set(vars(mod)), f"{module}.__all__ names things that do not exist"
    missing = {n for n in public - declared if getattr(vars(mod)[n], "__module__", None) == module}
    assert not missing, f"{module} defines public names missing from __all__: {sorted(missing)}"


def test_every_cli_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in cli.commands:
        assert f"trailrelay {name}" in readme, f"`trailrelay {name}` is not documented in README.md"


def test_contract_is_documented_in_architecture() -> None:
    from trailrelay import contract

    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for name in ("Record", "Batch", "Outcome", "Sink", "Encoder", "SinkPlugin", "SinkConfig", "SinkContract"):
        assert name in doc
    assert set(contract.__all__) >= {
        "Record",
        "Batch",
        "Outcome",
        "Status",
        "Sink",
        "SinkPlugin",
        "SinkConfig",
    }


def test_connectors_import_only_the_contract() -> None:
    """A connector depends on core's public contract, never on its internals."""
    allowed = ("trailrelay.contract", "trailrelay.testing")
    offenders = []
    for path in sorted((ROOT / "connectors").glob("*/src/**/*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            if text.startswith(("from trailrelay.", "import trailrelay.")) and not text.startswith(
                tuple(f"from {a}" for a in allowed)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {text}")
    assert not offenders, "\n".join(offenders)


def test_connectors_keep_no_copy_of_the_contracts_helpers() -> None:
    """Retry-After dates, secret scrubbing and BLAKE2b ids are the contract's, once (issue 15)."""
    from trailrelay import helpers

    copies = {
        "email.utils.parsedate": "contract.retry_after_seconds",
        "blake2b": "contract.hash_id / contract.document_id",
        '"***"': "contract.scrub",
    }
    offenders = []
    for path in sorted((ROOT / "connectors").glob("*/src/**/*.py")):
        text = path.read_text()
        for needle, instead in copies.items():
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle} (use {instead})")
        defined = {n for n in helpers.__all__ if f"\ndef {n}(" in text or f"\ndef _{n}(" in text}
        offenders.extend(f"{path.relative_to(ROOT)}: defines {n} (use contract.{n})" for n in sorted(defined))
    assert not offenders, "\n".join(offenders)


def test_the_test_kit_is_an_extra_that_names_itself_without_pytest() -> None:
    """A plain install has no pytest: importing the kit says which extra brings it."""
    extras = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("pytest") for dep in extras["testing"])
    code = "import sys; sys.modules['pytest'] = None; import trailrelay.testing"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert 'pip install "trailrelay[testing]"' in result.stderr


def test_core_has_no_import_cycle() -> None:
    """Counting lazy and type-checking imports too: deferring an import only hides a cycle."""
    found = cycles(core_graph())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_import_rules_hold() -> None:
    """The contract is a leaf, models import no runtime, layers keep their direction (ARCHITECTURE.md)."""
    found = offenders()
    assert not found, "\n".join(found)


def test_import_rules_are_documented() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for name in sorted((LEAVES | CONFIG_MODELS) - {"trailrelay", "trailrelay.transforms"}):
        assert f"`{name.removeprefix('trailrelay.')}`" in doc, f"{name} is not named in ARCHITECTURE.md"
    for importer, imported, _ in FORBIDDEN:
        rule = f"`{importer.removeprefix('trailrelay.')}` → not `{imported.removeprefix('trailrelay.')}`"
        assert rule in doc, f"the rule {rule} is not in ARCHITECTURE.md"


def test_builtin_sinks_shortcut_matches_the_declared_entry_points() -> None:
    """The entry points core loads without a metadata scan are exactly the ones it declares."""
    import tomllib

    from trailrelay.plugins import BUILTIN_SINKS

    declared = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["trailrelay.sinks"] == BUILTIN_SINKS
