"""``trailrelay package lambda``: the deployment zip for the Lambda handler and chosen connectors.

The zip holds trailrelay, the connectors and every dependency at its root, as Lambda's Python
runtime expects (``/var/task`` is on ``sys.path``), with the ``*.dist-info`` folders kept so the
connectors are found through their entry points. Dependencies are installed as manylinux wheels
for the Lambda runtime's CPU and glibc, whatever machine builds the zip. trailrelay and the
connectors come from this source checkout when there is one (``--repo``), else from the index.
The zip is reproducible: sorted entries, fixed timestamps, no byte-code.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click

import trailrelay
from trailrelay.helpers import check_writable, output_errors
from trailrelay.plugins import SHIPPED_CONNECTORS

__all__ = ["LambdaBuild", "check_layout", "install_commands", "package", "write_zip"]

RUNTIME_GLIBC = {"3.11": 26, "3.12": 34, "3.13": 34}
"""glibc minor version of each Lambda Python runtime's OS (Amazon Linux 2 for 3.11, AL2023 after)."""
ZIP_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class LambdaBuild:
    """What to put in the zip and for which runtime."""

    connectors: tuple[str, ...]
    python: str = "3.11"
    arch: str = "x86_64"
    repo: Path | None = None
    deps: bool = True

    def speedups(self) -> list[str]:
        """Optional native dependencies the zip includes (their wheels exist for both Lambda CPUs).

        RE2 for the Elastic connector's ecs mode: a cold start parses a run's user agents again.
        """
        return ["google-re2>=1.1,<2"] if "elastic" in self.connectors and self.deps else []

    def projects(self) -> list[str]:
        """Local project folders (from the checkout) or index names for trailrelay and the connectors."""
        if self.repo is not None:
            return [str(self.repo / "core")] + [str(self.repo / "connectors" / c) for c in self.connectors]
        return ["trailrelay"] + [f"trailrelay-{c}" for c in self.connectors]


def install_commands(build: LambdaBuild, wheels: list[Path], target: Path, installer: str) -> list[list[str]]:
    """The commands that install the wheels (and their dependencies) for the Lambda platform.

    Compiled dependencies must be manylinux wheels for the runtime's CPU and glibc. A pure-Python
    dependency published only as a source archive (splunk-sdk) is built into a wheel first: uv
    does that itself; with pip, ``pip wheel`` fills a local wheel folder the install then reads.
    """
    glibc = RUNTIME_GLIBC[build.python]
    machine = "aarch64" if build.arch == "arm64" else "x86_64"
    names = ([str(w) for w in wheels] or build.projects()) + build.speedups()
    no_deps = [] if build.deps else ["--no-deps"]
    if installer == "uv":
        platform = f"{machine}-manylinux2014" if glibc < 28 else f"{machine}-manylinux_2_{glibc}"
        cmd = ["uv", "pip", "install", "--target", str(target), "--python-platform", platform]
        return [[*cmd, "--python-version", build.python, "--quiet", *no_deps, *names]]
    house = target.parent / "wheelhouse"
    pip = [sys.executable, "-m", "pip"]
    install = [*pip, "install", "--target", str(target), "--implementation", "cp", "--python-version"]
    install += [
        build.python,
        "--only-binary=:all:",
        "--quiet",
        "--upgrade",
        "--platform",
        f"manylinux2014_{machine}",
    ]
    for minor in range(17, glibc + 1):
        install += ["--platform", f"manylinux_2_{minor}_{machine}"]
    if not build.deps:
        return [[*install, "--no-deps", *names]]
    prepare = [*pip, "wheel", "--quiet", "--wheel-dir", str(house), *names]
    return [prepare, [*install, "--find-links", str(house), *names]]


def write_zip(tree: Path, out: Path) -> tuple[int, int]:
    """Zip ``tree`` reproducibly (sorted, fixed times, no byte-code); (files, unzipped bytes)."""
    files = sorted(p for p in tree.rglob("*") if p.is_file() and _kept(p.relative_to(tree)))
    out.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(tree).as_posix(), _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if p.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            data = p.read_bytes()
            total += len(data)
            zf.writestr(info, data)
    return len(files), total


def _kept(rel: Path) -> bool:
    """Byte-code, the installer's console scripts (``bin/``) and its lock files stay out of the zip."""
    top = rel.parts[0]
    return (
        top != "bin" and not top.startswith(".") and "__pycache__" not in rel.parts and rel.suffix != ".pyc"
    )


def check_layout(zip_path: Path, connectors: tuple[str, ...], arch: str = "x86_64") -> list[str]:
    """Problems that would stop the function from starting (empty when the zip is usable)."""
    problems: list[str] = []
    foreign = ("aarch64", "arm64") if arch == "x86_64" else ("x86_64", "amd64")
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        if "trailrelay/aws_lambda/__init__.py" not in names:
            problems.append("trailrelay/aws_lambda/__init__.py is not at the zip's root")
        binaries = [n for n in names if n.endswith((".so", ".pyd", ".dylib")) or ".so." in n]
        wrong = [n for n in binaries if n.endswith((".pyd", ".dylib")) or any(f in n for f in foreign)]
        problems += [f"{n} is not a Linux {arch} binary" for n in sorted(wrong)[:5]]
        entry_points = b"".join(zf.read(n) for n in names if n.endswith(".dist-info/entry_points.txt"))
    declared = _sink_entry_points(entry_points.decode("utf-8", "replace"))
    problems += [
        f"no connector registers the sink {c!r} (entry point trailrelay.sinks)"
        for c in connectors
        if c not in declared
    ]
    return problems


def _sink_entry_points(text: str) -> set[str]:
    names: set[str] = set()
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "trailrelay.sinks" and "=" in line:
            names.add(line.split("=", 1)[0].strip())
    return names


def _checkout() -> Path | None:
    """The source checkout this trailrelay is installed from (editable installs), if any."""
    here = Path(trailrelay.__file__).resolve()
    for parent in here.parents:
        if (parent / "core" / "pyproject.toml").is_file() and (parent / "connectors").is_dir():
            return parent
    return None


def _installer(choice: str) -> str:
    has_pip = importlib.util.find_spec("pip") is not None
    if choice == "pip" or (choice == "auto" and has_pip):
        if not has_pip:
            raise click.ClickException("pip is not installed in this environment (use --installer uv)")
        return "pip"
    if shutil.which("uv") is None:
        raise click.ClickException("neither pip nor uv is available to install the dependencies")
    return "uv"


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - our own argv
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise click.ClickException(f"{what} failed ({' '.join(cmd[:4])} ...):\n" + "\n".join(tail))


def _wheels(build: LambdaBuild, installer: str, into: Path) -> list[Path]:
    """Wheels of trailrelay and the connectors from the checkout (pure Python: any platform)."""
    if build.repo is None:
        return []
    for project in build.projects():
        if not Path(project, "pyproject.toml").is_file():
            raise click.ClickException(f"{project} is not a project folder (is --repo the repository root?)")
        if installer == "uv":
            cmd = ["uv", "build", "--wheel", "--quiet", "--out-dir", str(into), project]
        else:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "--wheel-dir",
                str(into),
                project,
            ]
        _run(cmd, f"building {Path(project).name}")
    return sorted(into.glob("*.whl"))


@click.group()
def package() -> None:
    """Build deployment artifacts (the Lambda zip)."""


@package.command("lambda")
@click.option(
    "--connector",
    "connectors",
    multiple=True,
    type=click.Choice(sorted(SHIPPED_CONNECTORS)),
    help="A connector to include; repeat for several.",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The zip to write."
)
@click.option(
    "--python", "python_version", type=click.Choice(sorted(RUNTIME_GLIBC)), default="3.11", show_default=True
)
@click.option("--arch", type=click.Choice(["x86_64", "arm64"]), default="x86_64", show_default=True)
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Source checkout to build trailrelay and the connectors from (default: this installation's).",
)
@click.option("--from-index", is_flag=True, help="Take trailrelay and the connectors from the package index.")
@click.option("--no-deps", is_flag=True, help="Leave the dependencies out (a Lambda layer provides them).")
@click.option("--installer", type=click.Choice(["auto", "pip", "uv"]), default="auto", show_default=True)
def lambda_zip(
    *,
    connectors: tuple[str, ...],
    out: Path,
    python_version: str,
    arch: str,
    repo: Path | None,
    from_index: bool,
    no_deps: bool,
    installer: str,
) -> None:
    """Build the Lambda deployment zip (handler: trailrelay.aws_lambda.handler)."""
    source = None if from_index else (repo or _checkout())
    build = LambdaBuild(tuple(dict.fromkeys(connectors)), python_version, arch, source, not no_deps)
    tool = _installer(installer)
    with output_errors(out):  # before the build, which takes minutes
        out.parent.mkdir(parents=True, exist_ok=True)
        check_writable(out)
    with tempfile.TemporaryDirectory(prefix="trailrelay-lambda-") as tmp:
        wheels = _wheels(build, tool, Path(tmp, "wheels"))
        target = Path(tmp, "package")
        for cmd in install_commands(build, wheels, target, tool):
            _run(cmd, "installing for the Lambda platform")
        with output_errors(out):
            files, size = write_zip(target, out)
    problems = check_layout(out, build.connectors, build.arch)
    if problems:
        raise click.ClickException(f"{out} would not work: " + "; ".join(problems))
    zipped = out.stat().st_size
    click.echo(
        f"wrote {out}: {files} files, {zipped / 1e6:.1f} MB zipped, {size / 1e6:.1f} MB unzipped "
        f"(python{build.python}, {build.arch}; handler trailrelay.aws_lambda.handler)"
    )
    if zipped > ZIP_LIMIT or size > UNZIPPED_LIMIT:
        click.echo("warning: over Lambda's limits for a zip upload (50 MB zipped, 250 MB unzipped)", err=True)
