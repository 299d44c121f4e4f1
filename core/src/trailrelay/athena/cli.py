"""``trailrelay athena ddl``: the Athena table for a trail's bucket and saved hunting queries."""

from __future__ import annotations

import datetime as dt
import sys

import click
import orjson

from trailrelay.athena.ddl import SERDES, TableSpec, commercial_regions, create_table, parse_location

__all__ = ["athena"]


@click.group("athena")
def athena() -> None:
    """Query the trail's bucket with Amazon Athena (data events that stay out of the SIEM)."""


def _csv(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@athena.command("ddl")
@click.argument("location", metavar="s3://BUCKET[/PREFIX]")
@click.option("--org", metavar="o-…", help="Organization id of an organization trail (…/AWSLogs/o-…/).")
@click.option("--table", default="cloudtrail", show_default=True, help="Table name.")
@click.option("--database", help="Database (Glue catalog) to create the table in.")
@click.option(
    "--accounts",
    metavar="ID,ID",
    callback=_csv,
    help="Accounts to project (enum); without it `account` is injected: queries must name one.",
)
@click.option(
    "--regions",
    metavar="NAME,NAME",
    callback=_csv,
    help="Regions to project (default: every commercial region CloudTrail runs in, as botocore knows them).",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day of the projected range (default: a year ago).",
)
@click.option("--days", type=click.IntRange(1, 3660), default=7, show_default=True, help="Queries look back.")
@click.option(
    "--serde",
    type=click.Choice(sorted(SERDES)),
    default="cloudtrail",
    show_default=True,
    help="CloudTrail's SerDe, or the Hive JSON SerDe AWS's newer examples use (reads newer fields).",
)
@click.option("--no-queries", is_flag=True, help="Only the CREATE TABLE statement.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {ddl, queries: [{name, title, …, sql}]}.")
def ddl_command(
    *,
    location: str,
    org: str | None,
    table: str,
    database: str | None,
    accounts: tuple[str, ...],
    regions: tuple[str, ...],
    start: dt.datetime | None,
    days: int,
    serde: str,
    no_queries: bool,
    as_json: bool,
) -> None:
    """Print the CREATE TABLE (partition projection over account, region, day) and hunting queries.

    LOCATION is the trail's bucket and key prefix (the folder above AWSLogs/); ``…/AWSLogs/o-…/``
    is understood too. Run the statement once in Athena; the queries can be saved with
    ``aws athena create-named-query`` (``--json`` gives name, description and SQL of each).
    """
    try:
        bucket, prefix, org_id = parse_location(location, org)
        spec = TableSpec(
            bucket,
            prefix,
            org_id,
            table=table,
            database=database,
            accounts=accounts,
            regions=regions or commercial_regions(),
            serde=serde,
            **({"start": start.date()} if start else {}),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    from trailrelay.athena.queries import hunting_queries  # noqa: PLC0415 - loads the rule pack; keep --help fast

    statement = create_table(spec)
    queries = [] if no_queries else hunting_queries(spec, days=days)
    if as_json:
        doc = {
            "ddl": statement,
            "queries": [
                {
                    "name": q.name,
                    "title": q.title,
                    "description": q.description,
                    "parameters": list(q.parameters),
                    "sql": q.sql,
                }
                for q in queries
            ],
        }
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return
    out = [statement]
    for q in queries:
        params = "".join(f"\n-- parameter {i}: {p}" for i, p in enumerate(q.parameters, 1))
        out.append(f"\n-- {q.name}: {q.title}\n-- {q.description}{params}\n{q.sql};\n")
    click.echo("".join(out), nl=False)
