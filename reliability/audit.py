"""Supply chain: known vulnerabilities in what the four distributions install.

The dependency closure of ``trailrelay`` and the three connectors is read from the installed
metadata (markers evaluated for this interpreter), and each package version is looked up:

1. PyPI's release JSON (``/pypi/<name>/<version>/json``, its ``vulnerabilities``; the source
   ``pip-audit -s pypi`` uses). Where that endpoint is not served (this workplace's mirror
   answers 404 for every release page), then
2. PyPI's project JSON (``/pypi/<name>/json``), whose ``vulnerabilities`` describe the latest
   release only: exact for a package installed at its latest version, and then
3. a local copy of an OSV advisory database (``--advisories``, the ``vulns/<package>/*.yaml``
   layout of pypa/advisory-database), evaluated against the installed version.

OSV's own API (``pip-audit -s osv``) is not reachable from here. A package no source could
settle is *unverified*: listed, and an error with ``--strict``. Any known vulnerability is an
error unless its id (or an alias) is passed with ``--ignore`` after review. Run:
``python -m reliability.audit [--advisories DIR] [--strict] [--ignore ID] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["Finding", "Vulnerability", "affected", "audit", "closure", "main"]

OURS = (
    "trailrelay",
    "trailrelay-splunk",
    "trailrelay-elastic",
    "trailrelay-sentinel",
    "trailrelay-opensearch",
)
PYPI = "https://pypi.org/pypi"

Fetch = Callable[[str], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Vulnerability:
    """One advisory that applies to the installed version."""

    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]


@dataclass
class Finding:
    """What the audit knows about one installed package."""

    name: str
    version: str
    status: str = "unverified"
    """clean, vulnerable or unverified."""
    source: str = ""
    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    latest: str | None = None
    """The latest release on PyPI, when the project JSON was read."""

    def distinct(self) -> list[Vulnerability]:
        """The vulnerabilities without the same advisory listed again under another id."""
        out: list[Vulnerability] = []
        seen: set[str] = set()
        for v in self.vulnerabilities:
            if v.id not in seen:
                out.append(v)
            seen |= {v.id, *v.aliases}
        return out


def closure(roots: Iterable[str] = OURS, *, extras: Iterable[str] = ()) -> dict[str, str]:
    """Installed name -> version of everything ``roots`` require (``roots`` excluded)."""
    wanted = {canonicalize_name(r) for r in roots}
    extra_set = set(extras)
    seen: dict[str, str] = {}
    stack = [(r, True) for r in roots]
    while stack:
        name, is_root = stack.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = canonicalize_name(dist.metadata["Name"])
        if key in seen:
            continue
        seen[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not _marker_ok(req.marker, extra_set if is_root else set()):
                continue
            stack.append((req.name, False))
    return {k: v for k, v in sorted(seen.items()) if k not in wanted}


def _marker_ok(marker: Marker, extras: set[str]) -> bool:
    if marker.evaluate({"extra": ""}):
        return True
    return any(marker.evaluate({"extra": e}) for e in extras)


def _vulns(doc: dict[str, Any]) -> list[Vulnerability]:
    out = []
    for v in doc.get("vulnerabilities") or []:
        if v.get("withdrawn"):
            continue
        out.append(
            Vulnerability(str(v.get("id")), tuple(v.get("aliases") or ()), tuple(v.get("fixed_in") or ()))
        )
    return out


def http_json(url: str, timeout: float = 20.0) -> dict[str, Any] | None:
    """GET a JSON document; None for 404 (not served here)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - https only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def affected(version: str, advisory: dict[str, Any], name: str) -> bool:
    """True when an OSV advisory lists ``version`` of ``name`` as affected."""
    if advisory.get("withdrawn"):
        return False
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for entry in advisory.get("affected") or []:
        pkg = entry.get("package") or {}
        if canonicalize_name(str(pkg.get("name", ""))) != canonicalize_name(name):
            continue
        if version in {str(x) for x in entry.get("versions") or []}:
            return True
        for rng in entry.get("ranges") or []:
            if rng.get("type") == "ECOSYSTEM" and _in_range(v, rng.get("events") or []):
                return True
    return False


def _in_range(v: Version, events: list[dict[str, Any]]) -> bool:
    """OSV ECOSYSTEM range semantics: introduced <= v < fixed, or <= last_affected."""
    inside = False
    for event in events:
        for kind, raw in event.items():
            bound = Version("0") if str(raw) == "0" else _version(str(raw))
            if bound is None:
                continue
            if kind == "introduced" and v >= bound:
                inside = True
            elif (kind == "fixed" and v >= bound) or (kind == "last_affected" and v > bound):
                inside = False
    return inside


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _advisories(root: Path, name: str) -> list[dict[str, Any]]:
    import yaml  # noqa: PLC0415 - only for a local advisory database

    folder = root / "vulns" / canonicalize_name(name)
    if not folder.is_dir():
        folder = root / "vulns" / name
    docs = []
    for f in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        doc = yaml.safe_load(f.read_text())
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


def check_one(name: str, version: str, fetch: Fetch, advisories: Path | None) -> Finding:
    """Look one package version up in the sources, in order."""
    finding = Finding(name, version)
    try:
        release = fetch(f"{PYPI}/{name}/{version}/json")
    except (OSError, ValueError):
        release = None
    if release is not None:
        return _settle(finding, _vulns(release), "PyPI release JSON")
    try:
        project = fetch(f"{PYPI}/{name}/json")
    except (OSError, ValueError):
        project = None
    if project is not None:
        finding.latest = str(project.get("info", {}).get("version"))
    if project is not None and finding.latest == version:
        return _settle(finding, _vulns(project), "PyPI project JSON (latest release)")
    if advisories is not None:
        hits = [
            Vulnerability(
                str(a.get("id")),
                tuple(a.get("aliases") or ()),
                tuple(
                    str(ev["fixed"])
                    for aff in a.get("affected") or []
                    for rng in aff.get("ranges") or []
                    for ev in rng.get("events") or []
                    if "fixed" in ev
                ),
            )
            for a in _advisories(advisories, name)
            if affected(version, a, name)
        ]
        return _settle(finding, hits, f"advisory database {advisories.name}")
    finding.source = "no source (installed below the latest release)" if project else "no source answered"
    return finding


def _settle(finding: Finding, vulns: list[Vulnerability], source: str) -> Finding:
    finding.vulnerabilities = vulns
    finding.status = "vulnerable" if vulns else "clean"
    finding.source = source
    return finding


def audit(
    packages: dict[str, str], *, fetch: Fetch = http_json, advisories: Path | None = None, workers: int = 8
) -> list[Finding]:
    """Audit every package version; one Finding each, sorted by name."""
    if advisories is not None and not (advisories / "vulns").is_dir():
        raise ValueError(f"{advisories} has no vulns/ folder: not an OSV advisory database checkout")
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(lambda kv: check_one(kv[0], kv[1], fetch, advisories), packages.items()))
    return sorted(found, key=lambda f: f.name)


def apply_ignores(findings: list[Finding], ignore: set[str]) -> list[Finding]:
    """Drop reviewed advisories (by id or alias); a package left with none becomes ``accepted``."""
    for f in findings:
        kept = [v for v in f.vulnerabilities if not ({v.id, *v.aliases} & ignore)]
        if f.status == "vulnerable" and not kept:
            f.status = "accepted"
        f.vulnerabilities = kept or f.vulnerabilities
    return findings


def summarize(findings: list[Finding]) -> dict[str, int]:
    """Counts by status and by source."""
    out: dict[str, int] = {}
    for f in findings:
        out[f.status] = out.get(f.status, 0) + 1
        out[f"source: {f.source}"] = out.get(f"source: {f.source}", 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: print findings; exit 1 on a vulnerability (or, with --strict, on unverified).

    Exit 2 when no source answered for any package (offline: the audit proved nothing).
    """
    parser = argparse.ArgumentParser(prog="python -m reliability.audit", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--advisories", type=Path, help="local OSV advisory database (pypa/advisory-database)"
    )
    parser.add_argument("--strict", action="store_true", help="fail when a package could not be verified")
    parser.add_argument("--with-test-deps", action="store_true", help="include the [test] extras")
    parser.add_argument("--json", type=Path, help="write the findings here")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="ID",
        help="a reviewed advisory id or alias to accept",
    )
    args = parser.parse_args(argv)
    packages = closure(extras=("test",) if args.with_test_deps else ())
    findings = apply_ignores(audit(packages, advisories=args.advisories), set(args.ignore))
    for f in findings:
        ids = ", ".join(v.id for v in f.distinct())
        latest = f" (latest {f.latest})" if f.latest and f.latest != f.version else ""
        sys.stdout.write(f"{f.status:10} {f.name}=={f.version}{latest}  [{f.source}] {ids}\n")
    counts = summarize(findings)
    sys.stdout.write(f"{len(findings)} packages: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "\n")
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in findings], indent=2))
    if findings and counts.get("unverified") == len(findings):
        sys.stdout.write("no vulnerability source answered: nothing was verified\n")
        return 2
    if counts.get("vulnerable"):
        return 1
    return 1 if args.strict and counts.get("unverified") else 0


if __name__ == "__main__":
    raise SystemExit(main())
