"""``trailrelay rules export``: the same Sigma rules as native alerts for each SIEM.

The queries come from pySigma's backends (Splunk SPL, Elasticsearch and OpenSearch Lucene, Kusto) through our
pipelines (:mod:`.pipelines`); this module wraps each query in the SIEM's own alert definition:

* **Splunk**: ``savedsearches.conf`` stanzas, scheduled every 5 minutes (continuous scheduling,
  so no run is skipped) over the events *indexed* in the previous 5 minutes (``_index_earliest``)
  whose ``_time`` is within :data:`SPLUNK_LATE_DAYS` days, so late CloudTrail deliveries are
  neither missed nor alerted twice; a count correlation counts sliding ``_time`` windows
  (``streamstats time_window``) holding an event indexed since the last run.
  :func:`splunk_searches` gives the same as data for a REST install.
* **Elastic**: detection rules as NDJSON for Kibana's rule import (``type: query``, Lucene),
  selecting documents by ``event.ingested`` (the arrival time); a count correlation becomes a
  ``threshold`` rule around its base rule's query over the arrivals of its timespan plus a run.
* **OpenSearch**: Alerting plugin monitors as NDJSON, one body per line for
  ``POST _plugins/_alerting/monitors`` (Lucene from pySigma's OpenSearch backend): a
  ``query_level_monitor`` every 5 minutes over the documents that *arrived* in the previous 10
  minutes (``trailrelay.ingested``, set by the pipeline ``opensearch setup`` installs; a document
  without it by ``@timestamp``); a count correlation becomes a ``bucket_level_monitor`` (a
  composite aggregation by its group fields, a bucket trigger on the count or the distinct
  count) over the documents that arrived in its timespan plus 5 minutes.
* **Sentinel**: an ARM template of Scheduled analytics rules around the KQL, every 5 minutes over
  the rows that *arrived* since the previous run (``ingestion_time() > ago(5m)``) within a
  ``queryPeriod`` of ``TimeGenerated`` (the event time) that covers late delivery
  (:data:`SENTINEL_LATE_SECONDS`); a count correlation counts sliding event-time windows of its
  timespan that hold a newly arrived row (the Kusto backend has no correlation support).

Deterministic: the same rules give byte-identical output (the golden-file tests rely on it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sigma.backends.elasticsearch.elasticsearch_lucene import LuceneBackend
from sigma.backends.kusto.kusto import KustoBackend
from sigma.backends.opensearch.opensearch import OpensearchLuceneBackend
from sigma.backends.splunk.splunk import SplunkBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from trailrelay.detection.loader import RuleError, RuleSet, rule_key
from trailrelay.detection.lower import rule_severity
from trailrelay.detection.pipelines import (
    elastic_field,
    elastic_pipeline,
    opensearch_field,
    opensearch_pipeline,
    sentinel_pipeline,
    sentinel_table,
    sentinel_target,
    splunk_field,
    splunk_pipeline,
)

__all__ = [
    "DEFAULT_ELASTIC_INDEX",
    "DEFAULT_OPENSEARCH_INDEX",
    "SIEMS",
    "Exported",
    "SavedSearch",
    "elastic_rules",
    "export",
    "export_rules",
    "opensearch_monitors",
    "render_savedsearches",
    "sentinel_template",
    "splunk_searches",
]

Siem = Literal["splunk", "elastic", "sentinel", "opensearch"]
SIEMS: tuple[Siem, ...] = ("splunk", "elastic", "sentinel", "opensearch")
DEFAULT_ELASTIC_INDEX = "logs-aws.cloudtrail-*"
DEFAULT_OPENSEARCH_INDEX = "logs-aws.cloudtrail-*"
SCHEDULE_MINUTES = 5
NAME_PREFIX = "trailrelay - "
SENTINEL_LATE_SECONDS = 2 * 86400 + 3600
"""How late an event may reach Sentinel and still be alerted on: Azure Monitor keeps a
``TimeGenerated`` up to 2 days old (an older row is stored with its ingestion time, so any
lookback sees it), plus an hour for Azure's own ingestion latency."""
_SENTINEL_MAX_PERIOD_SECONDS = 14 * 86400
SPLUNK_LATE_DAYS = 7
"""How late an event may reach Splunk and still be alerted on: the searches' ``_time`` bound
(``dispatch.earliest_time``); a wider one makes every run open more buckets."""

# ATT&CK enterprise tactics: Sigma tag -> (id, name, Sentinel's enum value)
_TACTICS: dict[str, tuple[str, str, str]] = {
    "reconnaissance": ("TA0043", "Reconnaissance", "Reconnaissance"),
    "resource-development": ("TA0042", "Resource Development", "ResourceDevelopment"),
    "initial-access": ("TA0001", "Initial Access", "InitialAccess"),
    "execution": ("TA0002", "Execution", "Execution"),
    "persistence": ("TA0003", "Persistence", "Persistence"),
    "privilege-escalation": ("TA0004", "Privilege Escalation", "PrivilegeEscalation"),
    "defense-evasion": ("TA0005", "Defense Evasion", "DefenseEvasion"),
    "credential-access": ("TA0006", "Credential Access", "CredentialAccess"),
    "discovery": ("TA0007", "Discovery", "Discovery"),
    "lateral-movement": ("TA0008", "Lateral Movement", "LateralMovement"),
    "collection": ("TA0009", "Collection", "Collection"),
    "command-and-control": ("TA0011", "Command and Control", "CommandAndControl"),
    "exfiltration": ("TA0010", "Exfiltration", "Exfiltration"),
    "impact": ("TA0040", "Impact", "Impact"),
}
# Names of the techniques the shipped pack uses (others are exported with their id as name).
_TECHNIQUES: dict[str, str] = {
    "T1078": "Valid Accounts",
    "T1078.004": "Cloud Accounts",
    "T1098": "Account Manipulation",
    "T1098.001": "Additional Cloud Credentials",
    "T1098.003": "Additional Cloud Roles",
    "T1098.006": "Additional Container Cluster Roles",
    "T1485": "Data Destruction",
    "T1530": "Data from Cloud Storage",
    "T1562": "Impair Defenses",
    "T1562.001": "Disable or Modify Tools",
    "T1562.008": "Disable or Modify Cloud Logs",
    "T1580": "Cloud Infrastructure Discovery",
}
_TECHNIQUE_TAG = re.compile(r"^t\d{4}(?:\.\d{3})?$", re.IGNORECASE)
_SPLUNK_SEVERITY = {"informational": "2", "low": "3", "medium": "4", "high": "5", "critical": "6"}
_ELASTIC_RISK = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}
_SENTINEL_SEVERITY = {
    "informational": "Informational",
    "low": "Low",
    "medium": "Medium",
    "high": "High",
    "critical": "High",
}


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export produced: the file content, how many alerts it holds, and the rules left out."""

    text: str
    count: int
    failures: list[str]
    """One message per rule that could not be converted: the file, the rule, and why."""


def export(rule_set: RuleSet, siem: str, *, index: str | None = None) -> Exported:
    """Every rule that converts, as the SIEM's file content; the others named in ``failures``."""
    failures: list[str] = []
    if siem == "splunk":
        searches = splunk_searches(rule_set, index=index, failures=failures)
        return Exported(render_savedsearches(searches), len(searches), failures)
    if siem == "elastic":
        rules = elastic_rules(rule_set, index=index or DEFAULT_ELASTIC_INDEX, failures=failures)
        text = "".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS).decode() + "\n" for r in rules)
        return Exported(text, len(rules), failures)
    if siem == "opensearch":
        monitors = opensearch_monitors(rule_set, index=index or DEFAULT_OPENSEARCH_INDEX, failures=failures)
        text = "".join(orjson.dumps(m, option=orjson.OPT_SORT_KEYS).decode() + "\n" for m in monitors)
        return Exported(text, len(monitors), failures)
    if siem == "sentinel":
        template = sentinel_template(rule_set, table=index, failures=failures)
        text = orjson.dumps(template, option=orjson.OPT_INDENT_2).decode() + "\n"
        return Exported(text, len(template["resources"]), failures)
    raise ValueError(f"unknown SIEM {siem!r}; choose one of {', '.join(SIEMS)}")


def export_rules(rule_set: RuleSet, siem: str, *, index: str | None = None) -> str:
    """The file content for one SIEM: savedsearches.conf, NDJSON, or an ARM template (JSON).

    All or nothing: a :class:`RuleError` naming every rule that cannot be converted.
    """
    result = export(rule_set, siem, index=index)
    if result.failures:
        raise RuleError("\n".join(result.failures))
    return result.text


# --- common ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Meta:
    rule_id: str
    title: str
    description: str
    severity: str
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    falsepositives: tuple[str, ...]
    references: tuple[str, ...]
    author: str | None
    license: str | None


def _meta(rule: SigmaRule | SigmaCorrelationRule) -> _Meta:
    tactics = tuple(t.name for t in rule.tags if t.namespace == "attack" and t.name in _TACTICS)
    techniques = tuple(
        t.name.upper() for t in rule.tags if t.namespace == "attack" and _TECHNIQUE_TAG.match(t.name)
    )
    description = " ".join((rule.description or rule.title).split())
    return _Meta(
        rule_key(rule),
        rule.title,
        description,
        rule_severity(rule),
        tactics,
        techniques,
        tuple(rule.falsepositives or ()),
        tuple(rule.references or ()),
        rule.author,
        rule.license,
    )


def _outputs(collection: SigmaCollection) -> list[SigmaRule | SigmaCorrelationRule]:
    """Rules that become alerts: every rule except those only counted by a correlation."""
    hidden = {
        rule_key(ref.rule)
        for r in collection.rules
        if isinstance(r, SigmaCorrelationRule) and not r.generate
        for ref in r.rules or []
    }
    return [r for r in collection.rules if rule_key(r) not in hidden]


def _convert_all(
    backend: Any, collection: SigmaCollection, rule_set: RuleSet, failures: list[str]
) -> dict[str, str]:
    """Rule key -> query, converting in collection order (a correlation needs its rules converted first).

    A rule the backend cannot convert, for whatever reason (a ``SigmaError``, or a backend's
    ``NotImplementedError`` for a feature it lacks), is left out and named in ``failures``.
    """
    out: dict[str, str] = {}
    backend.init_processing_pipeline(None)
    for rule in collection.rules:
        where = f"{rule_set.origin(rule)}: rule {rule.title!r}"
        try:
            if isinstance(rule, SigmaCorrelationRule):
                queries = backend.convert_correlation_rule(rule)
            else:
                queries = backend.convert_rule(rule)
        except SigmaError as exc:
            failures.append(f"{where} cannot be exported: {exc}")
            continue
        except NotImplementedError as exc:  # a feature the backend lacks (Kusto: field references)
            failures.append(
                f"{where} cannot be exported: this SIEM's backend does not support it: {_plain(exc)}"
            )
            continue
        except Exception as exc:  # any other backend failure is this rule's, not the export's
            failures.append(f"{where} cannot be exported: {type(exc).__name__}: {_plain(exc)}")
            continue
        if not queries and rule._backreferences:
            continue  # counted by a correlation only: converted inside the correlation's query
        if len(queries) != 1:
            failures.append(f"{where} converts to {len(queries)} queries, expected 1")
            continue
        out[rule_key(rule)] = str(queries[0])
    return out


def _plain(exc: Exception) -> str:
    """The exception's message without pySigma's " (while converting rule None)" suffix."""
    return _WHILE_CONVERTING.sub("", str(exc)).strip() or type(exc).__name__


_WHILE_CONVERTING = re.compile(r"\s*\(while converting rule [^)]*\)\s*$")


def _checked(failures: list[str] | None) -> tuple[list[str], bool]:
    """The list to collect failures in, and whether to raise on them (no list given: all or nothing)."""
    return ([], True) if failures is None else (failures, False)


def _raise_first(failures: list[str], strict: bool) -> None:
    if strict and failures:
        raise RuleError(failures[0])


def _count_correlation(corr: SigmaCorrelationRule, rule_set: RuleSet) -> tuple[SigmaRule, int, str | None]:
    """(base rule, threshold as ">= N", value_count field) of a single-rule count correlation."""
    where = f"{rule_set.origin(corr)}: correlation {corr.title!r}"
    if corr.type not in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
        raise RuleError(f"{where}: only event_count and value_count correlations can be exported")
    if not corr.rules or len(corr.rules) != 1 or not isinstance(corr.rules[0].rule, SigmaRule):
        raise RuleError(f"{where}: export supports correlations over exactly one rule")
    cond = corr.condition
    op = getattr(cond, "op", None)
    if op not in (SigmaCorrelationConditionOperator.GT, SigmaCorrelationConditionOperator.GTE):
        raise RuleError(f"{where}: only 'gt' and 'gte' conditions can be exported")
    count = int(cond.count)  # type: ignore[union-attr]
    minimum = count + 1 if op is SigmaCorrelationConditionOperator.GT else count
    field = None
    if corr.type is SigmaCorrelationType.VALUE_COUNT:
        fieldref = getattr(cond, "fieldref", None)
        if not isinstance(fieldref, str):
            raise RuleError(f"{where}: value_count needs one 'field' in its condition")
        field = fieldref
    return corr.rules[0].rule, minimum, field


# --- Splunk ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SavedSearch:
    """One scheduled Splunk alert: its name and ``savedsearches.conf`` settings (in file order)."""

    name: str
    settings: dict[str, str]

    def rest_params(self) -> dict[str, str]:
        """The same alert as parameters of Splunk's ``saved/searches`` REST endpoint."""
        renamed = {"enableSched": "is_scheduled", "counttype": "alert_type", "relation": "alert_comparator",
                   "quantity": "alert_threshold"}  # fmt: skip
        return {renamed.get(k, k): v for k, v in self.settings.items()}


def splunk_searches(
    rule_set: RuleSet,
    *,
    index: str | None = None,
    window_minutes: int = SCHEDULE_MINUTES,
    failures: list[str] | None = None,
) -> list[SavedSearch]:
    """Scheduled alerts for every output rule, searching ``sourcetype="aws:cloudtrail"``.

    A rule's search keeps the events *indexed* in the previous ``window_minutes``
    (``_index_earliest``) whose ``_time`` lies within :data:`SPLUNK_LATE_DAYS` days; a
    correlation's counts sliding ``_time`` windows that hold such an event (:func:`_splunk_correlation`).
    With ``failures``, rules that cannot be converted are named there and left out; without,
    the first one raises :class:`RuleError`.
    """
    failures, strict = _checked(failures)
    backend = SplunkBackend(
        processing_pipeline=splunk_pipeline(index=index, index_window_minutes=window_minutes)
    )
    queries = _convert_all(backend, rule_set.fresh(correlations=False), rule_set, failures)
    outputs = _outputs(rule_set.fresh())
    bases: dict[str, str] = {}
    if any(isinstance(rule, SigmaCorrelationRule) for rule in outputs):  # their rules over every _indextime
        plain = SplunkBackend(processing_pipeline=splunk_pipeline(index=index))
        bases = _convert_all(plain, rule_set.fresh(correlations=False), rule_set, [])  # failures named above
    out = []
    for rule in outputs:
        meta = _meta(rule)
        earliest = f"-{SPLUNK_LATE_DAYS}d@h"
        try:
            if isinstance(rule, SigmaCorrelationRule):
                query = _splunk_correlation(rule, bases, rule_set, window_minutes)
                earliest = f"-{SPLUNK_LATE_DAYS * 86400 + int(rule.timespan.seconds)}s"
            else:
                query = _query_of(queries, rule, rule, rule_set)
        except _Skipped:
            continue  # named in failures
        except RuleError as exc:
            failures.append(str(exc))
            continue
        settings = {
            "description": f"{meta.description} (Sigma rule {meta.rule_id}; created by trailrelay)",
            "search": query,
            "enableSched": "1",
            "cron_schedule": f"*/{window_minutes} * * * *",
            "realtime_schedule": "0",  # continuous: no run is skipped, so no index-time window goes unseen
            "dispatch.earliest_time": earliest,
            "dispatch.latest_time": "now",
            "counttype": "number of events",
            "relation": "greater than",
            "quantity": "0",
            "alert.severity": _SPLUNK_SEVERITY.get(meta.severity, "4"),
            "alert.track": "1",
            "alert.digest_mode": "1",
            "disabled": "0",
        }
        out.append(SavedSearch(_stanza_name(meta.title), settings))
    _raise_first(failures, strict)
    return out


_SPLUNK_PLAIN_FIELD = re.compile(r"^[A-Za-z0-9_.]+$")


def _splunk_correlation(
    corr: SigmaCorrelationRule, bases: dict[str, str], rule_set: RuleSet, window_minutes: int
) -> str:
    """Sliding ``_time`` windows of the correlation's timespan holding an event indexed since the last run.

    ``streamstats time_window`` counts, at each event of a group, the group's events within
    the timespan of it; a window worth counting can be moved to end at an event, so the
    largest count at any event is the largest in any window. Only windows that hold an event
    indexed in the run's index-time window (the same ``-Nm@m`` to ``@m`` as the other alerts,
    from ``info_max_time``, the search's own "now") count, so an old burst does not alert again.
    """
    base, minimum, value_field = _count_correlation(corr, rule_set)
    query = _query_of(bases, base, corr, rule_set)
    names = [splunk_field(f) for f in corr.group_by or []]
    by = " by " + " ".join(n if _SPLUNK_PLAIN_FIELD.match(n) else f'"{n}"' for n in names) if names else ""
    present = "".join(f"\n| where isnotnull('{n}')" for n in names)  # as the stream: no group, no count
    if value_field is None:
        value, agg, count = "", "count as event_count", "event_count"
    else:
        value = f"\n| eval trailrelay_value='{splunk_field(value_field)}'"
        agg, count = "dc(trailrelay_value) as value_count", "value_count"
    return (
        f"{query}{present}{value}\n"
        "| addinfo\n"
        f'| eval trailrelay_arrived=if(_indextime>=relative_time(info_max_time, "-{window_minutes}m@m") '
        'AND _indextime<relative_time(info_max_time, "@m"), 1, 0)\n'
        f"| streamstats time_window={int(corr.timespan.seconds)}s {agg} "
        f"sum(trailrelay_arrived) as trailrelay_arrived_in_window{by}\n"
        f"| where {count}>={minimum} AND trailrelay_arrived_in_window>0\n"
        f"| stats max({count}) as {count} min(_time) as first_seen max(_time) as last_seen{by}"
    )


def _stanza_name(title: str) -> str:
    return NAME_PREFIX + title.translate({ord(c): None for c in "[]\n\r"})


def render_savedsearches(searches: Sequence[SavedSearch]) -> str:
    """``savedsearches.conf`` text (multi-line values continued with a trailing backslash)."""
    lines = ["# Generated by `trailrelay rules export --siem splunk` from Sigma rules; do not edit by hand."]
    for s in searches:
        lines.append("")
        lines.append(f"[{s.name}]")
        for key, value in s.settings.items():
            lines.append(f"{key} = " + " \\\n".join(value.split("\n")))
    return "\n".join(lines) + "\n"


# --- Elastic --------------------------------------------------------------------------------


def _threat(meta: _Meta) -> list[dict[str, Any]]:
    techniques: dict[str, dict[str, Any]] = {}
    for tid in meta.techniques:
        parent = tid.split(".")[0]
        entry = techniques.setdefault(
            parent,
            {"id": parent, "name": _TECHNIQUES.get(parent, parent), "reference": _attack_url(parent)},
        )
        if "." in tid:
            entry.setdefault("subtechnique", []).append(
                {"id": tid, "name": _TECHNIQUES.get(tid, tid), "reference": _attack_url(tid)}
            )
    out = []
    for tactic in meta.tactics:
        tac_id, tac_name, _ = _TACTICS[tactic]
        out.append(
            {
                "framework": "MITRE ATT&CK",
                "tactic": {
                    "id": tac_id,
                    "name": tac_name,
                    "reference": f"https://attack.mitre.org/tactics/{tac_id}/",
                },
                "technique": list(techniques.values()),
            }
        )
    return out


def _attack_url(tid: str) -> str:
    return "https://attack.mitre.org/techniques/" + tid.replace(".", "/") + "/"


def elastic_rules(
    rule_set: RuleSet, *, index: str = DEFAULT_ELASTIC_INDEX, failures: list[str] | None = None
) -> list[dict[str, Any]]:
    """Kibana detection rules (one dict per rule) over the ``aws.cloudtrail`` data stream.

    With ``failures``, rules that cannot be converted are named there and left out; without,
    the first one raises :class:`RuleError`.
    """
    backend = LuceneBackend(processing_pipeline=elastic_pipeline())
    return _alerts(rule_set, backend, _elastic_rule, index, failures)


_Build = Callable[[SigmaRule | SigmaCorrelationRule, RuleSet, dict[str, str], str], dict[str, Any]]


def _alerts(
    rule_set: RuleSet, backend: Any, build: _Build, index: str, failures: list[str] | None
) -> list[dict[str, Any]]:
    """One alert per output rule, built from the backend's queries; failures named or raised."""
    failures, strict = _checked(failures)
    queries = _convert_all(backend, rule_set.fresh(correlations=False), rule_set, failures)
    out = []
    for rule in _outputs(rule_set.fresh()):
        try:
            out.append(build(rule, rule_set, queries, index))
        except _Skipped:
            continue
        except RuleError as exc:
            failures.append(str(exc))
    _raise_first(failures, strict)
    return out


def _elastic_rule(
    rule: SigmaRule | SigmaCorrelationRule, rule_set: RuleSet, queries: dict[str, str], index: str
) -> dict[str, Any]:
    meta = _meta(rule)
    body: dict[str, Any] = {
        "rule_id": meta.rule_id,
        "name": NAME_PREFIX + meta.title,
        "description": meta.description,
        "severity": meta.severity if meta.severity != "informational" else "low",
        "risk_score": _ELASTIC_RISK.get(meta.severity, 47),
        "index": [index],
        "language": "lucene",
        "interval": f"{SCHEDULE_MINUTES}m",
        "from": f"now-{2 * SCHEDULE_MINUTES}m",
        "timestamp_override": "event.ingested",
        "enabled": True,
        "max_signals": 100,
        "version": 1,
        "author": [meta.author or "trailrelay"],
        "license": meta.license or "Apache-2.0",
        "tags": [
            "trailrelay",
            "Data Source: AWS CloudTrail",
            *(f"attack.{t.lower()}" for t in meta.techniques),
        ],
        "threat": _threat(meta),
        "false_positives": list(meta.falsepositives),
        "references": list(meta.references),
    }
    if isinstance(rule, SigmaCorrelationRule):
        base, minimum, value_field = _count_correlation(rule, rule_set)
        body["type"] = "threshold"
        body["query"] = _query_of(queries, base, rule, rule_set)
        threshold: dict[str, Any] = {
            "field": [elastic_field(f) for f in rule.group_by or []],
            "value": minimum,
        }
        if value_field is not None:
            threshold = {**threshold, "value": 1, "cardinality": [{"field": elastic_field(value_field),
                                                                     "value": minimum}]}  # fmt: skip
        body["threshold"] = threshold
        # arrivals (event.ingested) over the timespan and a run: a burst delivered in two files counts
        body["from"] = f"now-{int(rule.timespan.seconds) + 60 * SCHEDULE_MINUTES}s"
    else:
        body["type"] = "query"
        body["query"] = _query_of(queries, rule, rule, rule_set)
    return body


# --- OpenSearch -----------------------------------------------------------------------------

_OPENSEARCH_SEVERITY = {"informational": "5", "low": "4", "medium": "3", "high": "2", "critical": "1"}
"""Sigma level -> Alerting trigger severity ("1" is the highest)."""


OPENSEARCH_ARRIVAL_FIELD = "trailrelay.ingested"
"""When OpenSearch received the document: set by the ingest pipeline ``opensearch setup`` installs."""


def _opensearch_search(
    index: str, query: str, lookback: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The monitor's search: what *arrived* in the lookback (without an arrival time: ``@timestamp``)."""
    bounds = {"gte": f"{{{{period_end}}}}||-{lookback}", "lte": "{{period_end}}", "format": "epoch_millis"}
    arrived = {"range": {OPENSEARCH_ARRIVAL_FIELD: bounds}}
    unstamped = {
        "bool": {
            "must_not": [{"exists": {"field": OPENSEARCH_ARRIVAL_FIELD}}],
            "filter": [{"range": {"@timestamp": bounds}}],
        }
    }
    window = {"bool": {"should": [arrived, unstamped], "minimum_should_match": 1}}
    body: dict[str, Any] = {
        "size": 0,
        "query": {"bool": {"filter": [window, {"query_string": {"query": query, "analyze_wildcard": True}}]}},
    }
    return {"search": {"indices": [index], "query": {**body, **(extra or {})}}}


def opensearch_monitors(
    rule_set: RuleSet, *, index: str = DEFAULT_OPENSEARCH_INDEX, failures: list[str] | None = None
) -> list[dict[str, Any]]:
    """Alerting monitors (one dict per rule) over trailrelay's OpenSearch documents.

    With ``failures``, rules that cannot be converted are named there and left out; without,
    the first one raises :class:`RuleError`.
    """
    backend = OpensearchLuceneBackend(processing_pipeline=opensearch_pipeline(), index_names=[index])
    return _alerts(rule_set, backend, _opensearch_monitor, index, failures)


def _opensearch_monitor(
    rule: SigmaRule | SigmaCorrelationRule, rule_set: RuleSet, queries: dict[str, str], index: str
) -> dict[str, Any]:
    meta = _meta(rule)
    severity = _OPENSEARCH_SEVERITY.get(meta.severity, "3")
    monitor: dict[str, Any] = {
        "type": "monitor",
        "name": NAME_PREFIX + meta.title,
        "enabled": True,
        "schedule": {"period": {"interval": SCHEDULE_MINUTES, "unit": "MINUTES"}},
    }
    if isinstance(rule, SigmaCorrelationRule):
        base, minimum, value_field = _count_correlation(rule, rule_set)
        seconds = int(rule.timespan.seconds)
        sources = [{f: {"terms": {"field": opensearch_field(f)}}} for f in rule.group_by or []]
        group: dict[str, Any] = {"composite": {"sources": sources}}
        if value_field is not None:
            group["aggs"] = {"distinct": {"cardinality": {"field": opensearch_field(value_field)}}}
            path, script = {"distinct": "distinct"}, f"params.distinct >= {minimum}"
        else:
            path, script = {"_count": "_count"}, f"params._count >= {minimum}"
        monitor["monitor_type"] = "bucket_level_monitor"
        monitor["inputs"] = [
            _opensearch_search(
                index,
                _query_of(queries, base, rule, rule_set),
                f"{seconds + 60 * SCHEDULE_MINUTES}s",  # a burst delivered in several files, runs apart
                {"aggregations": {"groups": group}},
            )
        ]
        trigger = {
            "name": meta.title,
            "severity": severity,
            "condition": {
                "buckets_path": path,
                "parent_bucket_path": "groups",
                "script": {"source": script, "lang": "painless"},
            },
            "actions": [],
        }
        monitor["triggers"] = [{"bucket_level_trigger": trigger}]
    else:
        monitor["monitor_type"] = "query_level_monitor"
        query = _query_of(queries, rule, rule, rule_set)
        monitor["inputs"] = [_opensearch_search(index, query, f"{2 * SCHEDULE_MINUTES}m")]
        condition = {"script": {"source": "ctx.results[0].hits.total.value > 0", "lang": "painless"}}
        monitor["triggers"] = [
            {
                "query_level_trigger": {
                    "name": meta.title,
                    "severity": severity,
                    "condition": condition,
                    "actions": [],
                }
            }
        ]
    return monitor


# --- Sentinel -------------------------------------------------------------------------------

_ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
_ALERT_RULE_API = "2023-02-01"


class _Skipped(Exception):  # noqa: N818 - control flow: a rule already named in the failures
    """The rule's query is missing because its conversion failed (already reported)."""


def _query_of(
    queries: dict[str, str],
    rule: SigmaRule | SigmaCorrelationRule,
    output: SigmaRule | SigmaCorrelationRule,
    rule_set: RuleSet,
) -> str:
    """The converted query of ``rule`` (for ``output``); a failed base makes its correlation fail."""
    query = queries.get(rule_key(rule))
    if query is not None:
        return query
    if rule is output:
        raise _Skipped
    raise RuleError(
        f"{rule_set.origin(output)}: correlation {output.title!r} cannot be exported: its rule "
        f"{rule.title!r} could not be converted"
    )


def _sentinel_query(
    queries: dict[str, str], rule: SigmaRule | SigmaCorrelationRule, rule_set: RuleSet
) -> str:
    """The rule's KQL over the rows that *arrived* since the previous run (``ingestion_time()``).

    Sentinel filters ``TimeGenerated`` (the event time) by the rule's query period; the
    ingestion-time filter makes each late row count in exactly one run, as Microsoft's
    ingestion-delay guidance does. A correlation counts over event time instead, in sliding
    windows (:func:`_sentinel_correlation`).
    """
    if not isinstance(rule, SigmaCorrelationRule):
        query = _query_of(queries, rule, rule, rule_set)
        return f"{query}\n| where {_SENTINEL_ARRIVED}"
    return _sentinel_correlation(rule, queries, rule_set)


_SENTINEL_ARRIVED = f"ingestion_time() > ago({SCHEDULE_MINUTES}m)"


def _sentinel_correlation(corr: SigmaCorrelationRule, queries: dict[str, str], rule_set: RuleSet) -> str:
    """A count over sliding event-time windows that hold at least one row that arrived since the last run.

    A window of ``timespan`` that holds N rows can be moved to start at its earliest row, so the
    windows worth counting start at rows at most ``timespan`` before a newly arrived row of the
    same group: ``windows`` finds those starts, the second join counts each one's rows. Each
    group alerts once per run, with its fullest window.
    """
    base, minimum, value_field = _count_correlation(corr, rule_set)
    query = _query_of(queries, base, corr, rule_set)
    where = f"{rule_set.origin(corr)}: correlation {corr.title!r}"
    groups = []
    for name in corr.group_by or []:
        try:
            target = sentinel_target(name)
        except SigmaError as exc:
            raise RuleError(f"{where}: {exc}") from None
        if target.extend is not None or target.json_text:
            raise RuleError(f"{where}: group-by field {name!r} is not a plain AWSCloudTrail column")
        groups.append(target.column)
    keys = ", ".join(groups or ["AllEvents"])
    columns = ["TimeGenerated", "Arrived = ingestion_time()", *(groups or ["AllEvents = true"])]
    if value_field is None:
        agg, count = "event_count = count()", "event_count"
    else:
        value = sentinel_target(value_field)
        if value.json_text:
            raise RuleError(f"{where}: the counted field {value_field!r} is inside an array")
        columns.append(value.column if value.extend is None else f"{value.column} = {value.extend}")
        agg, count = f"value_count = dcount({value.column})", "value_count"
    span = f"{int(corr.timespan.seconds)}s"
    nonempty = "".join(f"\n| where isnotempty({g})" for g in groups)  # as the stream: no group, no count
    return (
        f"let events = materialize({query}{nonempty}\n| project {', '.join(columns)});\n"
        "let windows = events\n"
        f"| where Arrived > ago({SCHEDULE_MINUTES}m)\n"
        f"| project Arrival = TimeGenerated, {keys}\n"
        f"| join kind=inner (events | project WindowStart = TimeGenerated, {keys}) on {keys}\n"
        f"| where WindowStart between ((Arrival - {span}) .. Arrival)\n"
        f"| distinct WindowStart, {keys};\n"
        "windows\n"
        f"| join kind=inner events on {keys}\n"
        f"| where TimeGenerated between (WindowStart .. (WindowStart + {span}))\n"
        f"| summarize {agg} by WindowStart, {keys}\n"
        f"| where {count} >= {minimum}\n"
        f"| summarize arg_max({count}, WindowStart) by {keys}"
    )


def _sentinel_period(rule: SigmaRule | SigmaCorrelationRule, rule_set: RuleSet) -> str:
    """``queryPeriod``: late delivery (:data:`SENTINEL_LATE_SECONDS`), plus a correlation's timespan."""
    seconds = SENTINEL_LATE_SECONDS
    if isinstance(rule, SigmaCorrelationRule):
        seconds += int(rule.timespan.seconds)
    if seconds > _SENTINEL_MAX_PERIOD_SECONDS:
        raise RuleError(
            f"{rule_set.origin(rule)}: correlation {rule.title!r}: its timespan plus "
            f"{_iso_duration(SENTINEL_LATE_SECONDS)} of late delivery is longer than the 14 days a "
            "Sentinel rule may look back"
        )
    return _iso_duration(seconds)


def _iso_duration(seconds: int) -> str:
    """ISO 8601 duration, as ARM's alert rules take it: ``PT5M``, ``P2DT1H``."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def sentinel_template(
    rule_set: RuleSet, *, table: str | None = None, failures: list[str] | None = None
) -> dict[str, Any]:
    """An ARM template with one Scheduled analytics rule per output rule (parameter: ``workspace``).

    The queries read ``table``: ``AWSCloudTrail`` (default) or the custom ``Name_CL`` table
    ``trailrelay sentinel template --custom-table`` makes with the same columns; ValueError for
    another name. With ``failures``, rules that cannot be converted are named there and left
    out; without, the first one raises :class:`RuleError`.
    """
    failures, strict = _checked(failures)
    pipeline = sentinel_pipeline(sentinel_table(table))
    backend = KustoBackend(processing_pipeline=pipeline)  # type: ignore[arg-type]  # mis-annotated
    collection = rule_set.fresh()
    queries = _convert_all(backend, rule_set.fresh(correlations=False), rule_set, failures)
    resources = []
    for rule in _outputs(collection):
        meta = _meta(rule)
        guid = meta.rule_id
        try:
            query = _sentinel_query(queries, rule, rule_set)
            period = _sentinel_period(rule, rule_set)
        except _Skipped:
            continue
        except (RuleError, SigmaError) as exc:
            failures.append(str(exc))
            continue
        properties = {
            "displayName": NAME_PREFIX + meta.title,
            "description": meta.description,
            "severity": _SENTINEL_SEVERITY.get(meta.severity, "Medium"),
            "enabled": True,
            "query": query,
            "queryFrequency": f"PT{SCHEDULE_MINUTES}M",
            "queryPeriod": period,
            "triggerOperator": "GreaterThan",
            "triggerThreshold": 0,
            "suppressionDuration": "PT5H",
            "suppressionEnabled": False,
            "tactics": _unique(_TACTICS[t][2] for t in meta.tactics),
            "techniques": _unique(t.split(".")[0] for t in meta.techniques),
            "eventGroupingSettings": {"aggregationKind": "AlertPerResult"},
        }
        resources.append(
            {
                "id": "[concat(resourceId('Microsoft.OperationalInsights/workspaces/providers', "
                f"parameters('workspace'), 'Microsoft.SecurityInsights'),'/alertRules/{guid}')]",
                "name": f"[concat(parameters('workspace'),'/Microsoft.SecurityInsights/{guid}')]",
                "type": "Microsoft.OperationalInsights/workspaces/providers/alertRules",
                "kind": "Scheduled",
                "apiVersion": _ALERT_RULE_API,
                "properties": properties,
            }
        )
    _raise_first(failures, strict)
    return {
        "$schema": _ARM_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {"workspace": {"type": "String"}},
        "resources": resources,
    }


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
