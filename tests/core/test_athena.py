"""`trailrelay athena ddl`: the table parses as Hive DDL, the queries as Athena (Trino) SQL, the
projection matches CloudTrail's key layout, and the queries search the detection pack's calls."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

sqlglot = pytest.importorskip("sqlglot")
exp = sqlglot.exp

from trailrelay.athena.ddl import (  # noqa: E402
    INPUT_FORMAT,
    OUTPUT_FORMAT,
    SERDES,
    TableSpec,
    commercial_regions,
    create_table,
    location_template,
    parse_location,
)
from trailrelay.athena.queries import hunting_queries  # noqa: E402
from trailrelay.cli.main import cli  # noqa: E402
from trailrelay.detection.calls import blinding_calls, denied_burst, high_risk_calls, pack_rules  # noqa: E402
from trailrelay.sources.layout import split_layout  # noqa: E402

ORG = "o-abc1234567"
# A CloudTrail log file name as AWS writes it: ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json.gz
DELIVERY_NAME = re.compile(
    r"^(?P<account>\d{12})_CloudTrail_(?P<region>[a-z0-9-]+)_(?P<date>\d{8})T\d{4}Z_[A-Za-z0-9]{16}\.json(\.gz)?$"
)


def _spec(**kw: object) -> TableSpec:
    base: dict[str, object] = {"bucket": "org-trail-logs", "org": ORG, "start": dt.date(2025, 1, 1)}
    base.update(kw)
    return TableSpec(**base)  # type: ignore[arg-type]


def _properties(create: exp.Create) -> dict[str, str]:
    return {
        p.name: p.args["value"].name
        for p in create.find_all(exp.Property)
        if type(p) is exp.Property and isinstance(p.args.get("value"), exp.Literal)
    }


# -- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["hive", "athena"])
def test_ddl_parses_as_an_external_partitioned_table(dialect: str) -> None:
    create = sqlglot.parse_one(create_table(_spec(database="security")), dialect=dialect)
    assert isinstance(create, exp.Create)
    assert create.kind == "TABLE"
    assert create.find(exp.ExternalProperty) is not None
    assert create.this.find(exp.Table).sql(dialect="hive") == "security.cloudtrail"
    partitioned = create.find(exp.PartitionedByProperty)
    assert [c.name for c in partitioned.find_all(exp.ColumnDef)] == ["account", "region", "day"]
    serde = create.find(exp.RowFormatSerdeProperty)
    assert serde.this.name == SERDES["cloudtrail"] == "com.amazon.emr.hive.serde.CloudTrailSerde"
    fmt = create.find(exp.FileFormatProperty).this
    assert fmt.args["input_format"].name == INPUT_FORMAT == "com.amazon.emr.cloudtrail.CloudTrailInputFormat"
    assert fmt.args["output_format"].name == OUTPUT_FORMAT
    assert create.find(exp.LocationProperty).this.name == f"s3://org-trail-logs/AWSLogs/{ORG}/"
    props = _properties(create)
    assert props["projection.enabled"] == "true"
    assert props["projection.account.type"] == "injected"
    assert props["projection.region.type"] == "enum"
    assert props["projection.region.values"].split(",") == list(commercial_regions())
    assert props["projection.day.type"] == "date"
    assert props["projection.day.format"] == "yyyy/MM/dd"
    assert props["projection.day.range"] == "2025/01/01,NOW"
    assert props["projection.day.interval.unit"] == "DAYS"
    assert props["storage.location.template"] == (
        f"s3://org-trail-logs/AWSLogs/{ORG}/${{account}}/CloudTrail/${{region}}/${{day}}"
    )
    columns = {c.name for c in create.this.expressions if isinstance(c, exp.ColumnDef)}
    assert {"eventtime", "eventname", "eventsource", "errorcode", "useridentity", "eventcategory"} <= columns


def test_the_default_regions_are_every_region_botocore_knows_for_cloudtrail() -> None:
    import botocore.session

    known = set(botocore.session.get_session().get_available_regions("cloudtrail"))
    props = _properties(sqlglot.parse_one(create_table(_spec()), dialect="hive"))
    projected = props["projection.region.values"].split(",")
    assert known <= set(projected)
    assert {"ap-southeast-6", "us-east-1"} <= known
    assert not any(r.startswith(("us-gov-", "cn-")) for r in projected)


def test_accounts_given_are_an_enum_and_the_json_serde_can_be_chosen() -> None:
    create = sqlglot.parse_one(
        create_table(_spec(accounts=("111122223333", "444455556666"), serde="json", regions=("eu-west-1",))),
        dialect="hive",
    )
    props = _properties(create)
    assert props["projection.account.type"] == "enum"
    assert props["projection.account.values"] == "111122223333,444455556666"
    assert props["projection.region.values"] == "eu-west-1"
    assert create.find(exp.RowFormatSerdeProperty).this.name == "org.apache.hive.hcatalog.data.JsonSerDe"


def test_a_trail_without_organization_reads_the_account_folders() -> None:
    spec = _spec(org=None, prefix="trails/main")
    assert spec.root == "s3://org-trail-logs/trails/main/AWSLogs/"
    assert location_template(spec) == (
        "s3://org-trail-logs/trails/main/AWSLogs/${account}/CloudTrail/${region}/${day}"
    )


@pytest.mark.parametrize(
    ("uri", "org", "expected"),
    [
        ("s3://b-1", None, ("b-1", "", None)),
        ("s3://b-1/", ORG, ("b-1", "", ORG)),
        ("s3://b-1/pre/fix/", None, ("b-1", "pre/fix", None)),
        ("s3://b-1/pre/AWSLogs/", None, ("b-1", "pre", None)),
        (f"s3://b-1/pre/AWSLogs/{ORG}/", None, ("b-1", "pre", ORG)),
        (f"s3://b-1/AWSLogs/{ORG}", ORG, ("b-1", "", ORG)),
    ],
)
def test_locations_are_understood(uri: str, org: str | None, expected: tuple[str, str, str | None]) -> None:
    assert parse_location(uri, org) == expected


@pytest.mark.parametrize(
    ("uri", "org"),
    [
        ("b-1/prefix", None),
        (f"s3://b-1/AWSLogs/{ORG}/", "o-zzzzzzzzzz"),
        ("s3://b-1/AWSLogs/111122223333/CloudTrail/", None),
    ],
)
def test_other_locations_are_refused(uri: str, org: str | None) -> None:
    with pytest.raises(ValueError):
        parse_location(uri, org)


@pytest.mark.parametrize(
    "kw",
    [
        {"bucket": "Not_A_Bucket"},
        {"org": "o-short"},
        {"table": "drop table x; --"},
        {"accounts": ("1234",)},
        {"regions": ("us-east-1'; --",)},
        {"regions": ()},
        {"prefix": "it's"},
        {"serde": "openx"},
    ],
)
def test_values_that_would_break_the_statement_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _spec(**kw)


# -- the projection against CloudTrail's real key layout ---------------------------------------


def _projection_regex(template: str) -> re.Pattern[str]:
    """The template as a regex over keys: each ${name} one folder (the date three)."""
    bucket_and_root, _, _ = template.partition("${")
    root = bucket_and_root.split("/", 3)[3]  # drop s3://bucket/
    rest = template[len(bucket_and_root) :]
    pattern = re.escape(root) + re.escape(rest)
    pattern = pattern.replace(re.escape("${account}"), r"(?P<account>[^/]+)")
    pattern = pattern.replace(re.escape("${region}"), r"(?P<region>[^/]+)")
    pattern = pattern.replace(re.escape("${day}"), r"(?P<day>\d{4}/\d{2}/\d{2})")
    return re.compile("^" + pattern + "/[^/]+$")


def _java_date(fmt: str, day: dt.date) -> str:
    """A projection date format (Java DateTimeFormatter letters used here) applied to a day."""
    py = fmt.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d")
    return day.strftime(py)


def test_projection_matches_the_key_layout_of_real_delivered_files(corpus: Path) -> None:
    """Real CloudTrail delivery names from the corpus, placed where CloudTrail puts them.

    The corpus keeps AWS's file names (account, region and delivery time in the name) but not
    the bucket keys, and holds no organization trail (PROVENANCE.md: "organisation-trail key
    layout" is a gap), so each file is placed at the key CloudTrail's documented layout gives
    it, with and without an organization folder, and read back three ways: by the projection's
    template, by the forwarder's own layout parser, and against the records inside.
    """
    files = sorted(
        p for p in (corpus / "cloudtrail").rglob("*") if p.is_file() and DELIVERY_NAME.match(p.name)
    )
    if not files:
        pytest.skip("no CloudTrail files with delivery names in the corpus")
    for org in (ORG, None):
        spec = _spec(org=org, prefix="base")
        props = _properties(sqlglot.parse_one(create_table(spec), dialect="hive"))
        regex = _projection_regex(props["storage.location.template"])
        for path in files:
            m = DELIVERY_NAME.match(path.name)
            assert m is not None
            day = dt.datetime.strptime(m["date"], "%Y%m%d").replace(tzinfo=dt.UTC).date()
            folder = _java_date(props["projection.day.format"], day)
            org_part = f"{org}/" if org else ""
            key = f"base/AWSLogs/{org_part}{m['account']}/CloudTrail/{m['region']}/{folder}/{path.name}.gz"
            got = regex.match(key)
            assert got, key
            assert got["account"] == m["account"]
            assert got["region"] == m["region"] in props["projection.region.values"].split(",")
            assert got["day"] == day.strftime("%Y/%m/%d")
            layout = split_layout(key)
            assert layout is not None
            assert (layout["account"], layout["region"], layout["date"]) == (
                got["account"],
                got["region"],
                day.isoformat(),
            )
            records = orjson.loads(path.read_bytes())["Records"]
            # records sit in the folder of their region, delivered on their day or just after
            for record in records:
                assert record["awsRegion"] == got["region"]
                event_day = dt.datetime.fromisoformat(record["eventTime"]).date()
                assert day - dt.timedelta(days=1) <= event_day <= day


# -- the queries ---------------------------------------------------------------------------------


def _ddl_columns(spec: TableSpec) -> set[str]:
    create = sqlglot.parse_one(create_table(spec), dialect="hive")
    cols = {c.name for c in create.this.expressions if isinstance(c, exp.ColumnDef)}
    return cols | {"account", "region", "day"}


@pytest.mark.parametrize("accounts", [(), ("111122223333",)], ids=["injected", "enum"])
@pytest.mark.parametrize("dialect", ["trino", "athena"])
def test_every_query_parses_and_reads_only_the_table_columns(dialect: str, accounts: tuple[str, ...]) -> None:
    spec = _spec(database="security", accounts=accounts)
    columns = _ddl_columns(spec)
    queries = hunting_queries(spec, days=3)
    assert len(queries) == 4
    assert len({q.name for q in queries}) == 4
    for q in queries:
        tree = sqlglot.parse_one(q.sql, dialect=dialect)
        assert isinstance(tree, exp.Select), q.name
        ctes = {c.alias for c in tree.find_all(exp.CTE)}
        [table] = [t for t in tree.find_all(exp.Table) if t.name not in ctes]
        assert table.sql() == "security.cloudtrail"
        assert len(list(tree.find_all(exp.Placeholder))) == len(q.parameters), q.name
        aliases = {
            a.alias for sel in tree.find_all(exp.Select) for a in sel.expressions if isinstance(a, exp.Alias)
        }
        lambdas = {v.name for lam in tree.find_all(exp.Lambda) for v in lam.expressions}
        for col in tree.find_all(exp.Column):
            root = col.parts[0].name
            assert root in columns | aliases | lambdas, (q.name, col.sql())
        # every query is pruned to recent day folders (and one account when account is injected)
        where = table.find_ancestor(exp.Select).args["where"].sql(dialect="trino")
        assert "day >= DATE_FORMAT(CURRENT_DATE - INTERVAL '3' DAY, '%Y/%m/%d')" in where
        assert ("account = ?" in where) == (not accounts)


def _in_list(sql: str, column: str) -> set[str]:
    tree = sqlglot.parse_one(sql, dialect="trino")
    return {
        lit.name
        for node in tree.find_all(exp.In)
        if isinstance(node.this, exp.Column) and node.this.name == column
        for lit in node.expressions
    }


def test_blinding_query_searches_the_packs_defense_evasion_calls() -> None:
    [q] = [q for q in hunting_queries(_spec()) if q.name == "trailrelay_blinding_events"]
    names = _in_list(q.sql, "eventname")
    assert names == set(blinding_calls())
    assert {"StopLogging", "DeleteTrail", "PutEventSelectors", "DeleteDetector", "DeleteFlowLogs"} <= names
    assert "ConsoleLogin" not in names  # not defense evasion
    assert names <= high_risk_calls()[0]


def test_denied_burst_query_uses_the_packs_codes_window_and_threshold() -> None:
    burst = denied_burst()
    assert burst.threshold == 10 and burst.window_seconds == 300  # the shipped rule
    [q] = [q for q in hunting_queries(_spec()) if q.name == "trailrelay_access_denied_bursts"]
    tree = sqlglot.parse_one(q.sql, dialect="trino")
    likes = {node.expression.name.strip("%") for node in tree.find_all(exp.Like)}
    assert likes == set(burst.error_codes) >= {"AccessDenied", "UnauthorizedOperation"}
    assert tree.args["where"].find(exp.GTE).expression.name == str(burst.threshold)
    frames = {w.args["spec"].sql(dialect="trino") for w in tree.find_all(exp.Window)}
    assert frames == {f"RANGE BETWEEN {burst.window_seconds} PRECEDING AND CURRENT ROW"}
    assert "floor(" not in q.sql  # no fixed clock buckets


class _ArrayAgg:
    """Trino's array_agg for sqlite, as an aggregate window function (a JSON array)."""

    def __init__(self) -> None:
        self.items: list[object] = []

    def step(self, value: object) -> None:
        self.items.append(value)

    def inverse(self, value: object) -> None:
        self.items.remove(value)

    def value(self) -> str:
        return json.dumps(self.items)

    def finalize(self) -> str:
        return json.dumps(self.items)


class _MaxBy:
    """Trino's max_by for sqlite."""

    def __init__(self) -> None:
        self.best: tuple[object, object] | None = None

    def step(self, value: object, key: object) -> None:
        if self.best is None or key > self.best[1]:  # type: ignore[operator]
            self.best = (value, key)

    def finalize(self) -> object:
        return None if self.best is None else self.best[0]


def _run_in_sqlite(sql: str, events: list[tuple[str, str, str, str | None]]) -> list[dict[str, object]]:
    """Runs a hunting query's own text in sqlite over (principal, eventtime, eventname, errorcode).

    Trino's functions are registered under their names; two things sqlite cannot spell are
    rewritten: the struct field (the table is aliased ``useridentity``, its column is ``arn``)
    and the partition filter's INTERVAL (the day folders are not what this checks).
    """
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE cloudtrail (arn, eventtime, eventname, sourceipaddress, errorcode, account, day)"
    )
    db.executemany(
        "INSERT INTO cloudtrail VALUES (?, ?, ?, '198.51.100.7', ?, '111122223333', '9999/12/31')", events
    )
    db.create_function("from_iso8601_timestamp", 1, lambda s: dt.datetime.fromisoformat(s).timestamp())
    db.create_function("to_unixtime", 1, lambda x: x)
    db.create_function(
        "from_unixtime", 1, lambda x: dt.datetime.fromtimestamp(x, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    db.create_function("date_format", 2, lambda _d, _f: "0000/00/00")
    db.create_function("array_distinct", 1, lambda a: json.dumps(list(dict.fromkeys(json.loads(a)))))
    db.create_window_function("array_agg", 1, _ArrayAgg)
    db.create_aggregate("max_by", 2, _MaxBy)
    runnable = sql.replace("FROM cloudtrail\n", "FROM cloudtrail AS useridentity\n").replace(
        "INTERVAL '7' DAY", "7"
    )
    cursor = db.execute(runnable)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _at(base: dt.datetime, seconds: int) -> str:
    return (base + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_denied_burst_query_finds_a_burst_across_a_five_minute_boundary() -> None:
    """Ten denied calls within 87 s from 12:04:00: fixed 5-minute buckets split them 6 + 4."""
    [q] = [q for q in hunting_queries(_spec(accounts=("111122223333",))) if q.name.endswith("denied_bursts")]
    t0 = dt.datetime(2026, 3, 2, 12, 4, 0, tzinfo=dt.UTC)
    thief = "arn:aws:iam::111122223333:user/thief"
    burst = [
        (thief, _at(t0, s), f"List{i % 3}", "AccessDenied")
        for i, s in enumerate((0, 9, 18, 27, 36, 45, 60, 69, 78, 87))
    ]
    noise = [
        # allowed calls in between are not counted
        *[(thief, _at(t0, s), "GetCallerIdentity", None) for s in range(1, 80, 8)],
        # ten denied calls over 6 minutes: at most 8 within any 5 minutes
        *[
            ("arn:aws:iam::111122223333:user/slow", _at(t0, 40 * i), "ListUsers", "AccessDenied")
            for i in range(10)
        ],
        # nine denied calls within a minute: one short
        *[
            (
                "arn:aws:iam::111122223333:user/nine",
                _at(t0, 5 * i),
                "ListRoles",
                "Client.UnauthorizedOperation",
            )
            for i in range(9)
        ],
    ]
    rows = _run_in_sqlite(q.sql, burst + noise)
    assert len(rows) == 1, rows
    [row] = rows
    assert row["principal"] == thief
    assert row["denied_calls"] == 10
    assert (row["window_start"], row["window_end"]) == ("2026-03-02T12:04:00Z", "2026-03-02T12:05:27Z")
    assert row["first_reached"] == "2026-03-02T12:05:27Z"
    assert sorted(json.loads(str(row["calls"]))) == ["List0", "List1", "List2"]
    assert json.loads(str(row["source_ips"])) == ["198.51.100.7"]
    # twelve within 5 minutes, then one more 4 minutes later: the busiest window is reported
    more = [(thief, _at(t0, s), "List0", "AccessDenied") for s in (100, 110, 340)]
    [row] = _run_in_sqlite(q.sql, burst + more)
    assert row["denied_calls"] == 12
    assert (row["window_start"], row["window_end"]) == ("2026-03-02T12:04:00Z", "2026-03-02T12:05:50Z")
    assert row["first_reached"] == "2026-03-02T12:05:27Z"


def test_eks_query_covers_the_packs_eks_calls() -> None:
    [q] = [q for q in hunting_queries(_spec()) if q.name == "trailrelay_eks_exec_access"]
    eks = {n for r in pack_rules() if "eks.amazonaws.com" in r.event_sources for n in r.event_names}
    assert {"CreateAccessEntry", "AssociateAccessPolicy"} <= eks
    assert _in_list(q.sql, "eventname") == eks
    assert "ExecuteCommand" in q.sql and "StartSession" in q.sql


def test_principal_query_takes_the_principal_as_a_parameter() -> None:
    [q] = [q for q in hunting_queries(_spec(accounts=("111122223333",))) if q.name.endswith("by_principal")]
    assert q.parameters == ("principal ARN (user, role or assumed-role session)",)
    tree = sqlglot.parse_one(q.sql, dialect="trino")
    assert "eventcategory = 'Data'" in tree.args["where"].sql(dialect="trino")


def test_days_must_be_positive() -> None:
    with pytest.raises(ValueError):
        hunting_queries(_spec(), days=0)


# -- the command ---------------------------------------------------------------------------------


def test_command_prints_the_table_and_the_queries() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "athena",
            "ddl",
            f"s3://org-trail-logs/AWSLogs/{ORG}/",
            "--start",
            "2026-01-01",
            "--database",
            "sec",
        ],
    )
    assert result.exit_code == 0, result.output
    statements = [s for s in sqlglot.parse(result.output, dialect="athena") if s is not None]
    assert isinstance(statements[0], exp.Create)
    assert len(statements) == 5
    assert "'projection.day.range' = '2026/01/01,NOW'" in result.output
    assert "-- parameter 1: account id (12 digits)" in result.output


def test_command_json_has_the_ddl_and_named_queries() -> None:
    result = CliRunner().invoke(
        cli,
        ["athena", "ddl", "s3://org-trail-logs/base", "--org", ORG, "--accounts", "111122223333", "--json"],
    )
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.output)
    assert doc["ddl"].startswith("CREATE EXTERNAL TABLE IF NOT EXISTS cloudtrail (")
    assert f"s3://org-trail-logs/base/AWSLogs/{ORG}/" in doc["ddl"]
    assert [q["name"] for q in doc["queries"]] == [
        "trailrelay_access_denied_bursts",
        "trailrelay_blinding_events",
        "trailrelay_eks_exec_access",
        "trailrelay_data_access_by_principal",
    ]
    assert doc["queries"][0]["parameters"] == []


def test_command_refuses_a_start_in_the_future() -> None:
    """'2030/01/01,NOW' projects no day at all: every query would find nothing."""
    later = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    result = CliRunner().invoke(cli, ["athena", "ddl", "s3://org-trail-logs", "--start", f"{later}"])
    assert result.exit_code == 2
    assert f"start {later} is in the future" in result.output and "CREATE" not in result.output
    today = dt.datetime.now(dt.UTC).date()
    assert _spec(start=today).start == today  # today's logs are there to query


def test_command_without_queries_and_with_a_bad_location() -> None:
    runner = CliRunner()
    only = runner.invoke(cli, ["athena", "ddl", "s3://org-trail-logs", "--no-queries"])
    assert only.exit_code == 0
    assert len([s for s in sqlglot.parse(only.output, dialect="athena") if s is not None]) == 1
    bad = runner.invoke(cli, ["athena", "ddl", f"s3://b-1/AWSLogs/{ORG}/", "--org", "o-zzzzzzzzzz"])
    assert bad.exit_code == 2
    assert "o-zzzzzzzzzz" in bad.output
