"""The Athena ``CREATE TABLE`` for a trail's S3 bucket, with partition projection.

CloudTrail writes log files under ``[PREFIX/]AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``
(``trailrelay.sources.layout``). The table projects three partitions over that layout, so no
``ALTER TABLE ADD PARTITION`` or crawler is ever needed and a query that names a day, an account
and a region reads only those folders:

- ``account`` — ``enum`` over the accounts given, or ``injected`` (every query must then name
  the account: ``WHERE account = '111122223333'``, or ``IN (...)``) when none are given;
- ``region`` — ``enum`` over the regions given (default: every region of the ``aws``
  partition where CloudTrail runs, from the installed botocore's endpoint data);
- ``day`` — ``date`` in ``yyyy/MM/dd`` (the folder layout itself) from ``--start`` to ``NOW``.

Rows are read with CloudTrail's own input format and SerDe as AWS documents them
(``com.amazon.emr.cloudtrail.CloudTrailInputFormat``, ``com.amazon.emr.hive.serde.CloudTrailSerde``;
Athena user guide, "CloudTrail SerDe"). AWS's newer examples pair the same input format with
the Hive JSON SerDe (``org.apache.hive.hcatalog.data.JsonSerDe``), which reads fields added to
CloudTrail since; ``serde="json"`` writes that variant.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field

__all__ = [
    "INPUT_FORMAT",
    "OUTPUT_FORMAT",
    "SERDES",
    "TableSpec",
    "commercial_regions",
    "create_table",
    "location_template",
    "parse_location",
]

INPUT_FORMAT = "com.amazon.emr.cloudtrail.CloudTrailInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
SERDES = {
    "cloudtrail": "com.amazon.emr.hive.serde.CloudTrailSerde",
    "json": "org.apache.hive.hcatalog.data.JsonSerDe",
}


@functools.cache
def commercial_regions() -> tuple[str, ...]:
    """Every region of the ``aws`` partition where CloudTrail runs, as the installed botocore knows them.

    Read from botocore's endpoint data (a region AWS opens comes with a botocore upgrade), so the
    default projection leaves no region's folders unread. GovCloud and China: give ``regions``.
    """
    import boto3  # noqa: PLC0415 - botocore's endpoint data, loaded only when a table is made

    regions = boto3.session.Session().get_available_regions("cloudtrail", partition_name="aws")
    return tuple(sorted(regions))


_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# Columns in the order and with the types of AWS's CloudTrail table (Athena user guide); the
# JSON-valued fields stay strings: read them with json_extract_scalar.
_COLUMNS = """\
  eventversion STRING,
  useridentity STRUCT<
    type: STRING,
    principalid: STRING,
    arn: STRING,
    accountid: STRING,
    invokedby: STRING,
    accesskeyid: STRING,
    username: STRING,
    onbehalfof: STRUCT<userid: STRING, identitystorearn: STRING>,
    sessioncontext: STRUCT<
      attributes: STRUCT<mfaauthenticated: STRING, creationdate: STRING>,
      sessionissuer: STRUCT<
        type: STRING, principalid: STRING, arn: STRING, accountid: STRING, username: STRING
      >,
      ec2roledelivery: STRING,
      webidfederationdata: STRUCT<federatedprovider: STRING, attributes: MAP<STRING, STRING>>
    >
  >,
  eventtime STRING,
  eventsource STRING,
  eventname STRING,
  awsregion STRING,
  sourceipaddress STRING,
  useragent STRING,
  errorcode STRING,
  errormessage STRING,
  requestparameters STRING,
  responseelements STRING,
  additionaleventdata STRING,
  requestid STRING,
  eventid STRING,
  readonly STRING,
  resources ARRAY<STRUCT<arn: STRING, accountid: STRING, type: STRING>>,
  eventtype STRING,
  apiversion STRING,
  recipientaccountid STRING,
  serviceeventdetails STRING,
  sharedeventid STRING,
  vpcendpointid STRING,
  vpcendpointaccountid STRING,
  eventcategory STRING,
  addendum STRUCT<reason: STRING, updatedfields: STRING, originalrequestid: STRING, originaleventid: STRING>,
  sessioncredentialfromconsole STRING,
  edgedevicedetails STRING,
  tlsdetails STRUCT<tlsversion: STRING, ciphersuite: STRING, clientprovidedhostheader: STRING>"""


@dataclass(frozen=True, slots=True)
class TableSpec:
    """What the table reads: bucket, prefix above ``AWSLogs/``, organization, partitions' values."""

    bucket: str
    prefix: str = ""
    """Key prefix above ``AWSLogs/`` (the trail's S3KeyPrefix), without a trailing slash."""
    org: str | None = None
    table: str = "cloudtrail"
    database: str | None = None
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = field(default_factory=commercial_regions)
    start: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date() - dt.timedelta(days=365))
    serde: str = "cloudtrail"

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket):
            raise ValueError(f"{self.bucket!r} is not an S3 bucket name")
        if self.org is not None and not _ORG.match(self.org):
            raise ValueError(f"{self.org!r} is not an organization id (o- and 10 to 32 letters or digits)")
        for name, value in (("table", self.table), ("database", self.database)):
            if value is not None and not _NAME.match(value):
                raise ValueError(f"{name} {value!r}: use lowercase letters, digits and _ (Athena names)")
        for account in self.accounts:
            if not _ACCOUNT.match(account):
                raise ValueError(f"{account!r} is not a 12-digit account id")
        if not self.regions:
            raise ValueError("at least one region is needed")
        for region in self.regions:
            if not _REGION.match(region):
                raise ValueError(f"{region!r} is not a region name")
        if self.serde not in SERDES:
            raise ValueError(f"serde must be one of {sorted(SERDES)}")
        if "'" in self.prefix or "\\" in self.prefix or "$" in self.prefix:
            raise ValueError("the prefix may not contain quotes, backslashes or $")
        today = dt.datetime.now(dt.UTC).date()  # CloudTrail's day folders are UTC days
        if self.start > today:
            raise ValueError(
                f"start {self.start} is in the future (today is {today} UTC): the projected day range "
                "from it to NOW would be empty"
            )

    @property
    def root(self) -> str:
        """``s3://BUCKET/[PREFIX/]AWSLogs/[o-ORG/]``: the table's LOCATION."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        org = f"{self.org}/" if self.org else ""
        return f"s3://{self.bucket}/{prefix}AWSLogs/{org}"

    @property
    def qualified_table(self) -> str:
        """``database.table`` or ``table``."""
        return f"{self.database}.{self.table}" if self.database else self.table


def parse_location(uri: str, org: str | None = None) -> tuple[str, str, str | None]:
    """``(bucket, prefix, org)`` from ``s3://BUCKET[/PREFIX][/AWSLogs[/o-ORG]]``.

    The prefix is what sits above ``AWSLogs/``; an organization id in the path and ``org`` must
    agree. ValueError for anything else.
    """
    if not uri.startswith("s3://"):
        raise ValueError("the location is s3://BUCKET[/PREFIX]")
    bucket, _, path = uri[5:].partition("/")
    parts = [p for p in path.split("/") if p]
    found_org: str | None = None
    if "AWSLogs" in parts:
        at = parts.index("AWSLogs")
        rest = parts[at + 1 :]
        parts = parts[:at]
        if rest and _ORG.match(rest[0]):
            found_org, rest = rest[0], rest[1:]
        if rest:
            raise ValueError(
                f"give the folder above the accounts (…/AWSLogs/ or …/AWSLogs/o-…/), not {uri!r}"
            )
    if found_org and org and found_org != org:
        raise ValueError(f"the location names organization {found_org} but --org is {org}")
    return bucket, "/".join(parts), found_org or org


def location_template(spec: TableSpec) -> str:
    """``storage.location.template``: the folder of one account, region and day."""
    return f"{spec.root}${{account}}/CloudTrail/${{region}}/${{day}}"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_table(spec: TableSpec) -> str:
    """The ``CREATE EXTERNAL TABLE`` statement (Hive DDL, as Athena runs it), ending with ``;``."""
    if spec.accounts:
        account = [
            ("projection.account.type", "enum"),
            ("projection.account.values", ",".join(spec.accounts)),
        ]
    else:
        account = [("projection.account.type", "injected")]
    props = [
        ("projection.enabled", "true"),
        *account,
        ("projection.region.type", "enum"),
        ("projection.region.values", ",".join(spec.regions)),
        ("projection.day.type", "date"),
        ("projection.day.format", "yyyy/MM/dd"),
        ("projection.day.range", f"{spec.start:%Y/%m/%d},NOW"),
        ("projection.day.interval", "1"),
        ("projection.day.interval.unit", "DAYS"),
        ("storage.location.template", location_template(spec)),
        ("classification", "cloudtrail"),
    ]
    properties = ",\n".join(f"  {_q(k)} = {_q(v)}" for k, v in props)
    comment = "CloudTrail log files of " + spec.root + (f" (organization {spec.org})" if spec.org else "")
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {spec.qualified_table} (\n{_COLUMNS}\n)\n"
        f"COMMENT {_q(comment)}\n"
        "PARTITIONED BY (account STRING, region STRING, day STRING)\n"
        f"ROW FORMAT SERDE {_q(SERDES[spec.serde])}\n"
        f"STORED AS INPUTFORMAT {_q(INPUT_FORMAT)}\n"
        f"OUTPUTFORMAT {_q(OUTPUT_FORMAT)}\n"
        f"LOCATION {_q(spec.root)}\n"
        f"TBLPROPERTIES (\n{properties}\n);\n"
    )
