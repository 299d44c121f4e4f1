"""Saved hunting queries over the Athena table of ``trailrelay.athena.ddl`` (Athena SQL, Trino).

The event names come from the shipped detection pack (``trailrelay.detection.calls``), so the
queries search S3 for the same calls the forwarder tags in the SIEM. Every query reads only
the last ``days`` days of folders (partition projection prunes on ``day``). Parameters are
Athena execution parameters (``?``, in the order of ``parameters``): run them from the console,
which asks for the values, or with ``EXECUTE … USING``. When the table's ``account`` partition
is injected (no accounts given), the first parameter is the account to search.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trailrelay.athena.ddl import TableSpec
from trailrelay.detection.calls import blinding_calls, denied_burst, pack_rules

__all__ = ["HuntingQuery", "hunting_queries"]

EKS_SOURCE = "eks.amazonaws.com"
# Interactive shells AWS itself logs in CloudTrail. `kubectl exec` is in EKS's Kubernetes audit
# log (CloudWatch Logs), not in CloudTrail: the EKS query finds the access that makes it possible.
SHELL_CALLS = (("ecs.amazonaws.com", "ExecuteCommand"), ("ssm.amazonaws.com", "StartSession"))


@dataclass(frozen=True, slots=True)
class HuntingQuery:
    """One saved query: a name for ``aws athena create-named-query``, what it finds, its SQL."""

    name: str
    title: str
    description: str
    sql: str
    parameters: tuple[str, ...] = ()


def _list(values: Iterable[str]) -> str:
    items = sorted(values)
    return ", ".join("'" + v.replace("'", "''") + "'" for v in items)


def _where(spec: TableSpec, days: int) -> tuple[str, tuple[str, ...]]:
    """The partition filter every query starts with, and its parameters."""
    day = f"day >= date_format(current_date - INTERVAL '{days}' DAY, '%Y/%m/%d')"
    if spec.accounts:
        return day, ()
    return f"account = ?\n  AND {day}", ("account id (12 digits)",)


def hunting_queries(spec: TableSpec, *, days: int = 7) -> list[HuntingQuery]:
    """The saved queries for ``spec``'s table, each over the last ``days`` days."""
    if days < 1:
        raise ValueError("days must be at least 1")
    table = spec.qualified_table
    where, params = _where(spec, days)
    burst = denied_burst()
    window = burst.window_seconds
    denied = "\n      OR ".join(f"errorcode LIKE '%{code}%'" for code in burst.error_codes)
    # each denied call and the calls of the `window` seconds before it (RANGE over whole seconds)
    frame = f"PARTITION BY principal ORDER BY event_seconds RANGE BETWEEN {window} PRECEDING AND CURRENT ROW"
    eks = sorted(frozenset().union(*(r.event_names for r in pack_rules() if EKS_SOURCE in r.event_sources)))
    shells = "\n    OR ".join(
        f"(eventsource = '{src}' AND eventname = '{name}')" for src, name in SHELL_CALLS
    )
    return [
        HuntingQuery(
            "trailrelay_access_denied_bursts",
            "AccessDenied bursts",
            f"Principals with at least {burst.threshold} denied calls within {window // 60} minutes: "
            "stolen credentials being tried out (the pack's correlation rule, over S3). A sliding "
            "window: each denied call closes the window of the calls of the "
            f"{window // 60} minutes before it, so a burst is found wherever it falls on the clock. "
            "One row per principal: its busiest window, and when it first reached the threshold.",
            f"""WITH denied AS (
  SELECT
    useridentity.arn AS principal,
    CAST(to_unixtime(from_iso8601_timestamp(eventtime)) AS bigint) AS event_seconds,
    eventname,
    sourceipaddress
  FROM {table}
  WHERE {where}
    AND (
      {denied}
    )
),
windows AS (
  SELECT
    principal,
    event_seconds,
    count(*) OVER ({frame}) AS denied_calls,
    min(event_seconds) OVER ({frame}) AS first_seconds,
    array_agg(eventname) OVER ({frame}) AS calls,
    array_agg(sourceipaddress) OVER ({frame}) AS source_ips
  FROM denied
)
SELECT
  principal,
  from_unixtime(max_by(first_seconds, denied_calls)) AS window_start,
  from_unixtime(max_by(event_seconds, denied_calls)) AS window_end,
  max(denied_calls) AS denied_calls,
  array_distinct(max_by(calls, denied_calls)) AS calls,
  array_distinct(max_by(source_ips, denied_calls)) AS source_ips,
  from_unixtime(min(event_seconds)) AS first_reached
FROM windows
WHERE denied_calls >= {burst.threshold}
GROUP BY principal
ORDER BY denied_calls DESC, principal
LIMIT 1000""",  # noqa: S608 - names checked by TableSpec, values from the pack, quoted
            params,
        ),
        HuntingQuery(
            "trailrelay_blinding_events",
            "Blinding events",
            "Calls that stop or narrow logging and detection (CloudTrail, Config, GuardDuty, "
            "Security Hub, flow logs, leaving the organization), failed attempts included.",
            f"""SELECT
  eventtime,
  account,
  awsregion,
  eventsource,
  eventname,
  errorcode,
  useridentity.arn AS principal,
  sourceipaddress,
  useragent,
  requestparameters
FROM {table}
WHERE {where}
  AND eventname IN ({_list(blinding_calls())})
ORDER BY eventtime DESC
LIMIT 1000""",  # noqa: S608 - names checked by TableSpec, values from the pack, quoted
            params,
        ),
        HuntingQuery(
            "trailrelay_eks_exec_access",
            "EKS exec access and interactive shells",
            "Who was given access to EKS clusters (access entries and access policies: what lets a "
            "principal run kubectl exec) and who opened interactive shells AWS logs (ECS "
            "ExecuteCommand, SSM StartSession). kubectl exec itself is in EKS's Kubernetes audit "
            "log in CloudWatch Logs, not in CloudTrail.",
            f"""SELECT
  eventtime,
  account,
  awsregion,
  eventsource,
  eventname,
  errorcode,
  useridentity.arn AS principal,
  json_extract_scalar(requestparameters, '$.name') AS cluster,
  json_extract_scalar(requestparameters, '$.principalArn') AS granted_to,
  json_extract_scalar(requestparameters, '$.policyArn') AS access_policy,
  json_extract_scalar(requestparameters, '$.target') AS target,
  sourceipaddress
FROM {table}
WHERE {where}
  AND (
    (eventsource = '{EKS_SOURCE}' AND eventname IN ({_list(eks)}))
    OR {shells}
  )
ORDER BY eventtime DESC
LIMIT 1000""",  # noqa: S608 - names checked by TableSpec, values from the pack, quoted
            params,
        ),
        HuntingQuery(
            "trailrelay_data_access_by_principal",
            "Data access by a principal",
            "Every data event (S3 objects, Lambda invocations, DynamoDB items, …) of one principal: "
            "a user or role ARN, matched as the caller or as the role behind an assumed-role session.",
            f"""SELECT
  eventtime,
  account,
  awsregion,
  eventsource,
  eventname,
  errorcode,
  json_extract_scalar(requestparameters, '$.bucketName') AS bucket,
  json_extract_scalar(requestparameters, '$.key') AS object_key,
  transform(resources, r -> r.arn) AS resource_arns,
  sourceipaddress,
  useragent
FROM {table}
WHERE {where}
  AND eventcategory = 'Data'
  AND ? IN (useridentity.arn, useridentity.sessioncontext.sessionissuer.arn)
ORDER BY eventtime DESC
LIMIT 10000""",  # noqa: S608 - names checked by TableSpec; the principal is a parameter
            (*params, "principal ARN (user, role or assumed-role session)"),
        ),
    ]
