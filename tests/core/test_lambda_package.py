"""``trailrelay package lambda``: the install commands per runtime, the zip layout, a real small build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import trailrelay
from trailrelay.cli.package_cmd import LambdaBuild, check_layout, install_commands, package, write_zip
from trailrelay.plugins import SHIPPED_CONNECTORS

REPO = Path(__file__).resolve().parents[2]


def test_install_commands_target_the_lambda_platform(tmp_path: Path) -> None:
    wheels = [tmp_path / "trailrelay-0.1.0-py3-none-any.whl"]
    [uv] = install_commands(LambdaBuild(("splunk",)), wheels, tmp_path / "pkg", "uv")
    assert uv[:4] == ["uv", "pip", "install", "--target"]
    assert uv[uv.index("--python-platform") + 1] == "x86_64-manylinux2014"  # python3.11 runs on AL2
    assert uv[uv.index("--python-version") + 1] == "3.11"
    [uv_arm] = install_commands(LambdaBuild(("splunk",), "3.12", "arm64"), wheels, tmp_path, "uv")
    assert uv_arm[uv_arm.index("--python-platform") + 1] == "aarch64-manylinux_2_34"  # AL2023
    prepare, pip = install_commands(
        LambdaBuild(("elastic",), "3.12", "arm64"), wheels, tmp_path / "pkg", "pip"
    )
    assert prepare[1:4] == ["-m", "pip", "wheel"]
    platforms = [pip[i + 1] for i, a in enumerate(pip) if a == "--platform"]
    assert "manylinux2014_aarch64" in platforms and "manylinux_2_34_aarch64" in platforms
    assert "manylinux_2_35_aarch64" not in platforms and "--only-binary=:all:" in pip
    assert "--find-links" in pip
    # RE2 for the Elastic connector's ecs mode (an optional extra elsewhere: no musl wheels)
    assert "google-re2>=1.1,<2" in pip and "google-re2>=1.1,<2" in prepare
    assert not any(a.startswith("google-re2") for a in uv)
    [no_deps] = install_commands(LambdaBuild((), deps=False), wheels, tmp_path, "pip")
    assert "--no-deps" in no_deps
    [layer_deps] = install_commands(LambdaBuild(("elastic",), deps=False), wheels, tmp_path, "pip")
    assert not any(a.startswith("google-re2") for a in layer_deps)
    from_index = install_commands(LambdaBuild(("sentinel",)), [], tmp_path, "uv")[0]
    assert from_index[-2:] == ["trailrelay", "trailrelay-sentinel"]


def _tree(root: Path) -> Path:
    (root / "trailrelay" / "aws_lambda" / "__pycache__").mkdir(parents=True)
    (root / "trailrelay" / "aws_lambda" / "__init__.py").write_text("def handler(e, c): ...\n")
    (root / "trailrelay" / "aws_lambda" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    dist = root / "trailrelay_splunk-0.1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text('[trailrelay.sinks]\nsplunk = "trailrelay_splunk.plugin:plugin"\n')
    (root / "bin").mkdir()
    (root / "bin" / "trailrelay").write_text("#!/usr/bin/python\n")
    (root / ".lock").write_text("")
    (root / "orjson").mkdir()
    (root / "orjson" / "orjson.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    return root


def test_zip_is_reproducible_and_holds_only_what_lambda_needs(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    write_zip(tree, first)
    (tree / "trailrelay" / "aws_lambda" / "__init__.py").touch()  # a newer mtime changes nothing
    write_zip(tree, second)
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert names == sorted(names)
    assert "trailrelay/aws_lambda/__init__.py" in names
    assert not [n for n in names if n.startswith(("bin/", ".lock")) or "__pycache__" in n]
    assert check_layout(first, ("splunk",)) == []
    assert check_layout(first, ("splunk", "elastic")) == [
        "no connector registers the sink 'elastic' (entry point trailrelay.sinks)"
    ]
    assert check_layout(first, ("splunk",), "arm64") == [
        "orjson/orjson.cpython-311-x86_64-linux-gnu.so is not a Linux arm64 binary"
    ]
    (tree / "trailrelay" / "aws_lambda" / "__init__.py").unlink()
    write_zip(tree, first)
    assert "trailrelay/aws_lambda/__init__.py is not at the zip's root" in check_layout(first, ())


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv builds the wheels in this test")
def test_a_real_build_from_this_checkout_imports_and_finds_its_connector(tmp_path: Path) -> None:
    """Small and offline-safe: --no-deps (trailrelay and trailrelay-splunk only), from the source tree."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "core").symlink_to(Path(trailrelay.__file__).parents[2])  # the installed core, as is
    (repo / "connectors").symlink_to(REPO / "connectors")
    out = tmp_path / "function.zip"
    args = [
        "lambda",
        "--connector",
        "splunk",
        "--no-deps",
        "--installer",
        "uv",
        "--repo",
        str(repo),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(package, args)
    assert result.exit_code == 0, result.output
    assert "handler trailrelay.aws_lambda.handler" in result.output
    unpacked = tmp_path / "task"
    zipfile.ZipFile(out).extractall(unpacked)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import trailrelay.aws_lambda, trailrelay.aws_lambda.invoke;"
        "from trailrelay.plugins import installed_sinks;"
        "assert trailrelay.aws_lambda.__file__.startswith(sys.argv[1]), trailrelay.aws_lambda.__file__;"
        "assert 'splunk' in installed_sinks(); print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(unpacked)], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_an_output_that_cannot_be_written_is_refused_before_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(*_: object) -> None:
        raise AssertionError("built before the output path was checked")

    monkeypatch.setattr("trailrelay.cli.package_cmd._wheels", build)
    (tmp_path / "a-file").write_text("")
    for out, said in [
        (tmp_path / "a-file" / "function.zip", f"{tmp_path / 'a-file'}: File exists"),
        (tmp_path / "a-file" / "dist" / "function.zip", f"{tmp_path / 'a-file' / 'dist'}: Not a directory"),
    ]:
        args = ["lambda", "--connector", "splunk", "--no-deps", "--repo", str(REPO), "--out", str(out)]
        result = CliRunner().invoke(package, args)
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error: cannot write {said}\n"


def test_an_unknown_connector_is_bad_usage_and_help_names_every_connector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(*_: object) -> None:
        raise AssertionError("built for a connector that does not exist")

    monkeypatch.setattr("trailrelay.cli.package_cmd._wheels", build)
    out = tmp_path / "x.zip"
    result = CliRunner().invoke(package, ["lambda", "--connector", "bogus", "--out", str(out)])
    assert result.exit_code == 2, result.output  # bad usage, as elsewhere
    assert "Invalid value for '--connector': 'bogus' is not one of" in result.stderr
    assert not out.exists()
    shown = " ".join(CliRunner().invoke(package, ["lambda", "--help"]).output.split())
    assert f"[{'|'.join(sorted(SHIPPED_CONNECTORS))}]" in shown
    assert "opensearch" in shown
