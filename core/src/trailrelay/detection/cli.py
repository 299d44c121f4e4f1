"""``trailrelay rules``: list the loaded Sigma rules, try them on CloudTrail files, export them.

The rules are the shipped pack plus the ``[detection]`` table of a config file (``-c``), or
``--rules`` paths given here; ``--no-pack`` leaves the pack out. Exit status 2 means a rule or
path problem (the message names the file) or, for test and export, that no rule was loaded at
all (nothing would be checked), 1 that an input file could not be read, 3 (export)
that the rules that convert were written and the others, each named with its reason, were not.
Rules that read a field no CloudTrail record has load with a warning (they may never fire).
"""

from __future__ import annotations

import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson

__all__ = ["rules"]

EXIT_RULES = 2
EXIT_INPUT = 1
EXIT_SOME_NOT_EXPORTED = 3


def _options(func: Any) -> Any:
    func = click.option(
        "--no-pack", "no_pack", is_flag=True, help="Leave out the rule pack shipped with trailrelay."
    )(func)
    func = click.option(
        "--rules",
        "rule_paths",
        multiple=True,
        type=click.Path(path_type=Path),
        help="A Sigma rule file or folder (repeatable); added to those of the config.",
    )(func)
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Take the [detection] table (rules, pack) from this trailrelay config file.",
    )(func)


def _fail(message: str, code: int = EXIT_RULES) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _config(config_path: Path | None, rule_paths: tuple[Path, ...], no_pack: bool) -> tuple[Any, Path | None]:
    """The effective DetectionConfig and the folder relative rule paths are resolved against."""
    from trailrelay.detection.config import DetectionConfig  # noqa: PLC0415
    from trailrelay.errors import ConfigError  # noqa: PLC0415

    table: dict[str, Any] = {}
    base_dir: Path | None = None
    if config_path is not None:
        try:
            doc = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {config_path}: {exc}")
        table = dict(doc.get("detection") or {})
        base_dir = config_path.resolve().parent
    try:
        config = DetectionConfig.validate(table, where="detection")
    except ConfigError as exc:
        problems = "; ".join(line.strip() for line in str(exc).splitlines()[1:])  # under the heading
        _fail(f"[detection] in {config_path}: {problems}")
    extra = [p.resolve() for p in rule_paths]  # command-line paths are relative to the working directory
    rules = [*config.rules, *extra]
    return config.replace(rules=rules, pack=config.pack and not no_pack), base_dir


def _tagger(
    config_path: Path | None, rule_paths: tuple[Path, ...], no_pack: bool, *, doing: str | None = None
) -> Any:
    """The loaded rules; with ``doing`` (what needs them), none loaded is a failure, not a pass."""
    from trailrelay.detection.evaluate import SigmaTagger  # noqa: PLC0415
    from trailrelay.detection.loader import RuleError  # noqa: PLC0415

    config, base_dir = _config(config_path, rule_paths, no_pack)
    try:
        tagger = SigmaTagger(config, base_dir=base_dir)
    except RuleError as exc:
        _fail(str(exc))
    for warning in tagger.warnings:
        click.echo(f"warning: {warning}", err=True)
    if doing is not None and not tagger.rules:
        skipped = len(tagger.plan.skipped)
        _fail(
            f"no rules were loaded, so there is nothing to {doing} (the shipped pack is left out by "
            "--no-pack or [detection] pack = false: name rules with --rules or [detection] rules"
            + (f"; {skipped} rule files were skipped, see `trailrelay rules list`" if skipped else "")
            + ")"
        )
    return tagger


@click.group(name="rules")
def rules() -> None:
    """Sigma detection rules: list them, test them on CloudTrail files, export them to a SIEM."""


@rules.command(name="list")
@_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule instead of a table.")
def list_rules(config_path: Path | None, rule_paths: tuple[Path, ...], no_pack: bool, as_json: bool) -> None:
    """Show every loaded rule (and the files skipped because they are not for CloudTrail)."""
    tagger = _tagger(config_path, rule_paths, no_pack)
    infos = sorted(tagger.rules, key=lambda r: (r.kind != "rule", r.title))
    if as_json:
        for info in infos:
            click.echo(orjson.dumps(info.as_dict()).decode())
    else:
        for info in infos:
            click.echo(
                f"{info.severity:<9} {info.technique or '-':<10} {info.kind:<11} {info.rule_id}  {info.title}"
                f"  [{info.origin}]"
            )
        click.echo(f"{len(infos)} rules", err=True)
    for where, reason in tagger.plan.skipped:
        click.echo(f"skipped: {where}: {reason}", err=True)


@rules.command(name="test")
@_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
def test_rules(
    config_path: Path | None, rule_paths: tuple[Path, ...], no_pack: bool, paths: tuple[Path, ...]
) -> None:
    """Run the rules over CloudTrail files or folders: one JSON line per match, then a summary line.

    Exit status 1 when a file could not be read, or when no record was read at all (nothing was
    tested); 2 for a rule that cannot be loaded.
    """
    from trailrelay.record import Origin, Record  # noqa: PLC0415
    from trailrelay.sources.decompress import decompress  # noqa: PLC0415
    from trailrelay.sources.files import list_files  # noqa: PLC0415
    from trailrelay.sources.parse import NotALogFile, iter_records  # noqa: PLC0415

    tagger = _tagger(config_path, rule_paths, no_pack, doing="test")
    out = sys.stdout
    records = matches = files = bad_records = 0
    unreadable: list[dict[str, str]] = []
    skipped_files: list[dict[str, str]] = []
    by_rule: Counter[str] = Counter()
    for root in paths:
        found, skipped = list_files(root)
        skipped_files.extend({"file": p, "reason": why} for why, p in skipped)
        for f in found:
            origin = Origin("file", str(f))
            try:
                items = list(iter_records(decompress(f.read_bytes()), origin))
            except NotALogFile as skip:
                skipped_files.append({"file": str(f), "reason": skip.kind})
                continue
            except Exception as exc:  # a corrupt or unreadable file: report it, go on with the others
                unreadable.append({"file": str(f), "reason": f"{type(exc).__name__}: {exc}"})
                continue
            files += 1
            for item in items:
                if not isinstance(item, Record):
                    bad_records += 1
                    continue
                records += 1
                tagger(item)
                for tag in item.tags:
                    matches += 1
                    by_rule[tag.title] += 1
                    line = {
                        "rule_id": tag.rule_id,
                        "title": tag.title,
                        "severity": tag.severity,
                        "technique": tag.technique,
                        "eventID": item.routing.event_id,
                        "eventName": item.routing.event_name,
                        "eventTime": item.routing.event_time.isoformat() if item.routing.event_time else None,
                        "file": str(f),
                    }
                    out.write(orjson.dumps(line).decode() + "\n")
    summary = {
        "summary": {
            "files": files,
            "records": records,
            "matches": matches,
            "tagged_records": tagger.tagged,
            "by_rule": dict(sorted(by_rule.items())),
            "unreadable_records": bad_records,
            "unreadable_files": unreadable,
            "skipped_files": skipped_files,
            "evaluation_errors": tagger.errors,
        }
    }
    out.write(orjson.dumps(summary).decode() + "\n")
    out.flush()
    click.echo(
        f"{records} records in {files} files: {matches} matches from {len(by_rule)} of "
        f"{len(tagger.rules)} rules" + (f"; {len(unreadable)} unreadable files" if unreadable else ""),
        err=True,
    )
    if not records:  # nothing was tested: a wrong folder must not read as "no alerts"
        click.echo(
            "error: no CloudTrail records were read, so no rule was tested (the paths hold no "
            ".json, .json.gz or .ndjson log files with records; skipped files are in the summary)",
            err=True,
        )
        raise SystemExit(EXIT_INPUT)
    if unreadable:
        raise SystemExit(EXIT_INPUT)


@rules.command(name="export")
@_options
@click.option(
    "--siem",
    required=True,
    type=click.Choice(["splunk", "elastic", "sentinel", "opensearch"]),
    help="Target SIEM.",
)
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), help="Write here instead of stdout."
)
@click.option(
    "--index",
    help="Splunk: index to search (default: the role's default indexes); Elastic and OpenSearch: "
    "index pattern (default logs-aws.cloudtrail-*); Sentinel: table (default AWSCloudTrail, or the "
    "Name_CL of `trailrelay sentinel template --custom-table`).",
)
def export(  # noqa: PLR0917 - click passes options as positional parameters
    config_path: Path | None,
    rule_paths: tuple[Path, ...],
    no_pack: bool,
    siem: str,
    out_path: Path | None,
    index: str | None,
) -> None:
    """Convert the rules into native alerts (savedsearches.conf, Kibana NDJSON, ARM, OpenSearch monitors)."""
    from trailrelay.detection.export import export as export_to  # noqa: PLC0415
    from trailrelay.helpers import output_errors  # noqa: PLC0415

    if siem == "sentinel":  # the table name goes into the KQL: refuse one that is not a table
        from trailrelay.detection.pipelines import sentinel_table  # noqa: PLC0415

        try:
            sentinel_table(index)
        except ValueError as exc:
            _fail(str(exc))
    tagger = _tagger(config_path, rule_paths, no_pack, doing="export")
    result = export_to(tagger.rule_set, siem, index=index)
    for failure in result.failures:
        click.echo(f"error: {failure}", err=True)
    if result.failures and result.count == 0:
        _fail(f"no rule could be exported for {siem}; nothing written")
    if out_path is None:
        sys.stdout.write(result.text)
    else:
        with output_errors(out_path):
            out_path.write_text(result.text, encoding="utf-8")
        click.echo(f"wrote {result.count} alerts for {siem} to {out_path}", err=True)
    if result.failures:
        click.echo(
            f"exported {result.count} alerts for {siem}; {len(result.failures)} rules could not be "
            "exported (named above)",
            err=True,
        )
        raise SystemExit(EXIT_SOME_NOT_EXPORTED)
