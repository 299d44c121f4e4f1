"""Field-by-field agreement of our ECS mapper with Elastic's own pipeline test expectations.

The pairs live in the shared corpus (``elastic-pipeline-tests/``; Elastic License 2.0 test data,
read here at test time and never copied into the repository). Each ``test-*.log`` line is a raw
CloudTrail record; the matching ``-expected.json`` holds the document Elastic's ingest pipeline
produced for it. We compare every field we claim to produce. A difference must be explained by
one of the KNOWN_DIFFERENCES below (each also listed in connectors/elastic/README.md), whose
predicates check the specific cause, so an unexplained difference fails the test.

Elastic's expected files were written by different versions of the pipeline; we follow the
newest we could read, so several known differences are "older pipeline" ones.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.testing import require_corpus
from trailrelay_elastic.ecs import prune, to_ecs

NOT_CLAIMED = (
    "source.geo.",  # GeoIP needs MaxMind databases: not produced (README: use a pipeline with geoip)
    "source.as.",
    "related.entity",  # entity-store fields of the pipeline's actor/target mapping: not produced
    "actor.",
    "target.",
    "user.entity.",
    "user.target.entity.",
    "host.target.",
    "service.",
    "entity.",
    "event.created",  # the shipper's timestamp, injected by the test configuration
    "event.original",  # kept by integration mode only
    "tags",  # set by the test configuration
    "error.",
)


def flatten(doc: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if out is None else out
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            flatten(value, path, out)
        else:
            out[path] = value
    return out


@dataclass
class Case:
    name: str
    source: dict[str, Any]
    ours: dict[str, Any]
    expected: dict[str, Any]
    retain_minimal: bool


_MISSING = object()


def _src(case: Case, path: str) -> Any:
    value: Any = case.source
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _session_values(case: Case) -> set[str]:
    arn = _src(case, "userIdentity.arn") or ""
    out: set[str] = set()
    if ":sts:" in arn and "/" in arn:
        name = arn.rsplit("/", 1)[1]
        out.add(name)
        if "@" in name:
            out.add(name.split("@", 1)[0])
    return out


def _json_text(case: Case, path: str, ours: Any, exp: Any) -> bool:
    field = {
        "aws.cloudtrail.request_parameters": "requestParameters",
        "aws.cloudtrail.response_elements": "responseElements",
        "aws.cloudtrail.additional_eventdata": "additionalEventData",
        "aws.cloudtrail.service_event_details": "serviceEventDetails",
    }.get(path)
    return (
        field is not None
        and isinstance(ours, str)
        and isinstance(exp, str)
        and exp.startswith("{")
        and orjson.loads(ours) == prune(case.source[field])
    )


def _older_related_user(case: Case, ours: Any, exp: Any) -> bool:
    if not isinstance(ours, list):
        return False
    exp_set = set(exp or [])
    user = case.ours.get("user", {})
    newer = {_src(case, "userIdentity.principalId"), user.get("id"), user.get("name")} | _session_values(case)
    return exp_set <= set(ours) and set(ours) - exp_set <= newer


def _older_user_id(case: Case, ours: Any, exp: Any) -> bool:
    ident_type = _src(case, "userIdentity.type")
    arn = _src(case, "userIdentity.arn")
    issuer_arn = _src(case, "userIdentity.sessionContext.sessionIssuer.arn")
    newer = arn if ident_type in ("IAMUser", "Root") else issuer_arn if ident_type == "AssumedRole" else None
    return exp == _src(case, "userIdentity.principalId") and ours == newer


Rule = Callable[[Case, str, Any, Any], bool]


@dataclass(frozen=True)
class Known:
    key: str
    reason: str
    applies: Rule


KNOWN_DIFFERENCES: list[Known] = [
    Known(
        "json-text",
        "request/response/additional-data text is compact JSON, not Java's Map.toString",
        _json_text,
    ),
    Known(
        "ua-version-dot",
        "Elasticsearch before 8.16.2 wrote a trailing dot for a missing patch version (the test config matches loosely)",
        lambda c, p, o, e: (
            p == "user_agent.version"
            and isinstance(e, str)
            and e.rstrip(".") == o
            and re.match(r"^\d+\.\d+(\.|\..*)?$", e) is not None
        ),
    ),
    Known(
        "ua-newer-rules",
        "our uap-core rules are newer and also recognise the OS in AWS SDK user agents (os/macos#...)",
        lambda c, p, o, e: p.startswith("user_agent.os.") and e is _MISSING,
    ),
    Known(
        "resources-order",
        "the pipeline de-duplicates resources through a Java HashMap, whose order is arbitrary",
        lambda c, p, o, e: (
            p == "aws.cloudtrail.resources"
            and isinstance(o, list)
            and isinstance(e, list)
            and sorted(json.dumps(x, sort_keys=True) for x in o)
            == sorted(json.dumps(x, sort_keys=True) for x in e)
        ),
    ),
    Known(
        "retain-minimal",
        "that test enables the integration's `retain: minimal` option, which trailrelay does not implement",
        lambda c, p, o, e: c.retain_minimal and p.startswith("aws.cloudtrail.flattened.") and e is _MISSING,
    ),
    Known(
        "older-user-id",
        "older pipelines set user.id to principalId; the newest sets the IAM user or role ARN",
        lambda c, p, o, e: p == "user.id" and _older_user_id(c, o, e),
    ),
    Known(
        "older-principal-id",
        "older pipelines had no aws.cloudtrail.user_identity.principal_id",
        lambda c, p, o, e: (
            p == "aws.cloudtrail.user_identity.principal_id"
            and e is _MISSING
            and o == _src(c, "userIdentity.principalId")
        ),
    ),
    Known(
        "older-related-user",
        "older pipelines added fewer values to related.user (no principalId, user.id, role name or session name)",
        lambda c, p, o, e: p == "related.user" and _older_related_user(c, o, None if e is _MISSING else e),
    ),
    Known(
        "older-cloud-provider",
        "older pipelines left cloud.provider to the shipper (Elastic's inputs set it to aws)",
        lambda c, p, o, e: p == "cloud.provider" and e is _MISSING and o == "aws",
    ),
    Known(
        "older-cloud-service",
        "older pipelines had no cloud.service.name",
        lambda c, p, o, e: (
            p == "cloud.service.name" and e is _MISSING and f"{o}.amazonaws.com" == _src(c, "eventSource")
        ),
    ),
    Known(
        "older-related-ip",
        "older pipelines had no related.ip",
        lambda c, p, o, e: p == "related.ip" and e is _MISSING and o[0] == c.ours["source"]["ip"],
    ),
    Known(
        "older-related-hosts",
        "older pipelines had no related.hosts",
        lambda c, p, o, e: p == "related.hosts" and e is _MISSING,
    ),
    Known(
        "older-user-email",
        "older pipelines did not take user.email from an e-mail session name",
        lambda c, p, o, e: p == "user.email" and e is _MISSING and o in _session_values(c),
    ),
    Known(
        "older-ec2-role-delivery",
        "older pipelines did not map sessionContext.ec2RoleDelivery",
        lambda c, p, o, e: (
            p.endswith("session_context.ec2_role_delivery")
            and e is _MISSING
            and o == _src(c, "userIdentity.sessionContext.ec2RoleDelivery")
        ),
    ),
    Known(
        "older-basic-date",
        "older pipelines parsed creationDate as ISO 8601 only, dropping the basic form (20131102T010628Z)",
        lambda c, p, o, e: (
            p.endswith("session_context.creation_date")
            and e is _MISSING
            and "-" not in str(_src(c, "userIdentity.sessionContext.attributes.creationDate"))
        ),
    ),
    Known(
        "older-empty-flattened",
        "older pipelines left an empty aws.cloudtrail.flattened object; the newest removes empties",
        lambda c, p, o, e: p == "aws.cloudtrail.flattened" and e == {} and o is _MISSING,
    ),
    Known(
        "older-empty-event-type",
        "an older categorization table gave SendCommand an empty event.type",
        lambda c, p, o, e: p == "event.type" and e == [] and o == ["start"],
    ),
    Known(
        "older-management-event-bool",
        "older pipelines kept managementEvent as a boolean; the newest converts it to a string",
        lambda c, p, o, e: p == "aws.cloudtrail.management_event" and str(e).lower() == o,
    ),
]


def load_cases(pairs: Path) -> list[Case]:
    cases = []
    for expected_file in sorted(pairs.glob("test-*.log-expected.json")):
        name = expected_file.name.removesuffix("-expected.json")
        config = pairs / f"{name}-config.yml"
        retain_minimal = config.is_file() and re.search(r"retain:\s*minimal", config.read_text()) is not None
        for expected in json.loads(expected_file.read_text())["expected"]:
            original = expected.get("event", {}).get("original")
            if original is None:  # the test runner's doc for a trailing blank input line
                continue
            source = json.loads(original)
            cases.append(Case(name, source, to_ecs(source), expected, retain_minimal))
    return cases


def claimed(path: str) -> bool:
    return not path.startswith(NOT_CLAIMED)


def test_agreement_with_elastic_pipeline_tests(capsys: pytest.CaptureFixture[str]) -> None:
    pairs = require_corpus("elastic-pipeline-tests")
    cases = load_cases(pairs)
    assert cases, "no pairs found"
    agree: Counter[str] = Counter()
    known: dict[str, Counter[str]] = defaultdict(Counter)
    unexplained: list[str] = []
    for case in cases:
        ours = flatten(case.ours)
        exp = flatten(case.expected)
        for path in sorted(p for p in set(ours) | set(exp) if claimed(p)):
            o = ours.get(path, _MISSING)
            e = exp.get(path, _MISSING)
            if o == e:
                agree[path] += 1
                continue
            rule = next((k for k in KNOWN_DIFFERENCES if k.applies(case, path, o, e)), None)
            if rule is None:
                unexplained.append(f"{case.name}: {path}: ours={o!r:.120} expected={e!r:.120}")
            else:
                known[path][rule.key] += 1
    fields = sorted(set(agree) | set(known))
    total_agree = sum(agree.values())
    total_known = sum(sum(c.values()) for c in known.values())
    with capsys.disabled():
        print(f"\nECS agreement with {len(cases)} Elastic pipeline-test documents ({pairs}):")
        print(f"  {'field':<70} {'agree':>5}  known differences")
        for path in fields:
            notes = ", ".join(f"{k}={n}" for k, n in sorted(known[path].items()))
            print(f"  {path:<70} {agree[path]:>5}  {notes}")
        print(
            f"  total: {total_agree} field values agree, {total_known} differ for a documented reason, "
            f"{len(unexplained)} unexplained"
        )
    assert not unexplained, "unexplained differences:\n" + "\n".join(unexplained)
    # The core fields must agree everywhere, not only be explained.
    for path in (
        "@timestamp",
        "event.action",
        "event.provider",
        "event.outcome",
        "event.id",
        "event.kind",
        "cloud.account.id",
        "cloud.region",
        "source.address",
        "source.ip",
        "user.name",
        "aws.cloudtrail.user_identity.arn",
        "aws.cloudtrail.user_identity.type",
    ):
        assert not known.get(path), f"{path} differs: {dict(known[path])}"
        assert agree[path] > 0, path


def test_every_known_difference_is_documented() -> None:
    readme = (Path(__file__).parents[3] / "connectors" / "elastic" / "README.md").read_text()
    for rule in KNOWN_DIFFERENCES:
        assert f"`{rule.key}`" in readme, f"README lacks the known difference {rule.key}"
