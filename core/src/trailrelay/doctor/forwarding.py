"""Checks of the forwarding set-up: the SQS queue, the bucket's notifications, the fast path."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any

from trailrelay.doctor.aws import read
from trailrelay.doctor.context import Context
from trailrelay.doctor.findings import Finding, Severity

__all__ = [
    "SECONDS_PER_MIB",
    "check_fast_path",
    "check_notifications",
    "check_queue",
    "event_name_matches",
    "needed_visibility",
]

SECONDS_PER_MIB = 10.0
"""Time allowed per compressed MiB of one object to read, parse and deliver it (conservative:
gzip CloudTrail expands about tenfold, and a SIEM takes a few MB/s per connection)."""
BASE_SECONDS = 60.0
SAMPLE_KEYS = 1000


def _q(value: str) -> str:
    return shlex.quote(value)


def needed_visibility(largest_bytes: int) -> int:
    """Seconds a consumer may need for the largest object before its message must not reappear."""
    return math.ceil(BASE_SECONDS + SECONDS_PER_MIB * largest_bytes / (1 << 20))


def _queue_arn(url: str, region: str | None) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` from a queue URL (region from the host when it has one)."""
    parts = url.rstrip("/").split("/")
    host = parts[2] if len(parts) > 2 else ""
    if host.startswith("sqs.") and host.count(".") >= 3:
        region = host.split(".")[1]
    return f"arn:aws:sqs:{region or 'us-east-1'}:{parts[-2]}:{parts[-1]}"


def check_queue(ctx: Context, bucket: str | None, prefix: str) -> str | None:
    """Redrive policy and visibility timeout of the SQS source's queue; returns the queue's ARN."""
    url = ctx.settings.queue_url
    if url is None:
        return None
    sqs = ctx.clients.get("sqs", ctx.settings.queue_region)
    read_back: dict[str, Any] = {}
    with ctx.attempt("queue-no-dlq", "the queue's redrive policy", Severity.MEDIUM, url):
        attrs = read(
            sqs.get_queue_attributes, "sqs:GetQueueAttributes", QueueUrl=url, AttributeNames=["All"]
        )["Attributes"]
        arn = str(attrs.get("QueueArn") or _queue_arn(url, ctx.settings.queue_region))
        if attrs.get("RedrivePolicy"):
            ctx.report.ok("queue-no-dlq", url)
        else:
            name = url.rstrip("/").rsplit("/", 1)[-1]
            redrive = json.dumps(
                {"RedrivePolicy": json.dumps({"deadLetterTargetArn": f"{arn}-dlq", "maxReceiveCount": "5"})}
            )
            ctx.report.add(
                Finding(
                    "queue-no-dlq",
                    Severity.MEDIUM,
                    "the queue has no dead-letter queue (redrive policy)",
                    url,
                    "A notification whose object cannot be read is received again and again, forever; "
                    "with a dead-letter queue it is set aside after a few tries and can be looked at.",
                    f"aws sqs create-queue --queue-name {_q(name + '-dlq')} --attributes "
                    f"MessageRetentionPeriod=1209600 && aws sqs set-queue-attributes --queue-url {_q(url)} "
                    f"--attributes {_q(redrive)}  (deploy/sqs-lambda/template.yaml has both)",
                )
            )
        read_back = {"arn": arn, "visibility": int(attrs.get("VisibilityTimeout", 30))}
    if not read_back:
        return None
    if bucket is not None:
        _visibility(ctx, url, read_back["visibility"], bucket, prefix)
    else:
        ctx.report.notes.append(
            "the visibility timeout was not held against object sizes: no log bucket known "
            "(set [doctor] bucket)"
        )
    return str(read_back["arn"])


def _visibility(ctx: Context, url: str, visibility: int, bucket: str, prefix: str) -> None:
    s3 = ctx.clients.get("s3")
    logs = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    with ctx.attempt(
        "queue-visibility-short", "the queue's visibility timeout against object sizes", Severity.MEDIUM, url
    ):
        listed = read(
            s3.list_objects_v2, "s3:ListBucket", Bucket=bucket, Prefix=logs, MaxKeys=SAMPLE_KEYS
        ).get("Contents", [])
        largest = max((int(o.get("Size", 0)) for o in listed), default=0)
        needed = needed_visibility(largest)
        if visibility >= needed:
            ctx.report.ok("queue-visibility-short", url)
            return
        ctx.report.add(
            Finding(
                "queue-visibility-short",
                Severity.MEDIUM,
                f"the visibility timeout ({visibility}s) is shorter than the {needed}s the largest sampled "
                f"object ({largest / (1 << 20):.1f} MiB) may take",
                url,
                "A consumer that does not extend visibility (a Lambda function on the queue) is still "
                "working when the message reappears: another one reads the same object and its records "
                "are delivered twice. trailrelay's workers extend it, but the queue's own timeout is what "
                "Lambda uses (AWS: at least six times the function timeout).",
                f"aws sqs set-queue-attributes --queue-url {_q(url)} --attributes VisibilityTimeout={needed}",
                details={"visibility": visibility, "needed": needed, "largest_bytes": largest},
            )
        )


_ACCOUNT = re.compile(r"\d{12}")
_ORG_ID = re.compile(r"o-[a-z0-9]{10,32}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")

_Part = str | re.Pattern[str] | None
"""A piece of a log file's key: its text; None where log files differ (date, time, id, the accounts
of an organization trail, the regions of a multi-region trail); a pattern for one value doctor does
not know (the account when no trail writes to the bucket)."""


def _layouts(trail: dict[str, Any] | None, org_id: str | None) -> list[list[_Part]]:
    """The forms of a CloudTrail log file's key (not a digest's) the trail writes to its bucket.

    ``[prefix/]AWSLogs/[org-id/]account/CloudTrail/region/YYYY/MM/DD/
    account_CloudTrail_region_YYYYMMDDTHHMMZ_id.json.gz``: an organization trail writes the
    org-id form (trails made before it existed wrote without it, so both are allowed).
    """
    account: _Part = _ACCOUNT
    region: _Part = _REGION
    org: _Part = org_id or _ORG_ID
    forms: tuple[str, ...] = ("plain", "org")
    prefix = ""
    if trail is not None:
        arn = str(trail.get("TrailARN") or "").split(":")
        prefix = str(trail.get("S3KeyPrefix") or "")
        home = str(trail.get("HomeRegion") or (arn[3] if len(arn) > 5 else ""))
        if trail.get("IsMultiRegionTrail"):
            region = None
        elif home:
            region = home
        if trail.get("IsOrganizationTrail"):
            account, forms = None, ("org", "plain")
        else:
            account, forms = (arn[4] if len(arn) > 5 and arn[4] else _ACCOUNT), ("plain",)
    head: list[_Part] = [f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"]
    name: list[_Part] = [account, "_CloudTrail_", region, "_", None, ".json.gz"]  # None: time and id
    tail: list[_Part] = [account, "/CloudTrail/", region, "/", None, "/", *name]  # None: YYYY/MM/DD
    return [head + ([org, "/"] if form == "org" else []) + tail for form in forms]


def _starts(layout: list[_Part], value: str) -> bool | None:
    """Whether every log key of ``layout`` starts with ``value`` (None: on a value doctor does not know)."""
    rest, known = value, True
    for part in layout:
        if not rest:
            break
        if isinstance(part, str):
            if not (rest.startswith(part) or part.startswith(rest)):
                return False
            rest = rest[len(part) :]
            continue
        if part is None:
            return False  # some log files have other characters here
        found = part.match(rest)
        if found is None:  # the prefix may end inside the unknown value
            return None if not re.search("[/_]", rest) else False
        rest, known = rest[found.end() :], False
    return False if rest else known or None


def _ends(layout: list[_Part], value: str) -> bool | None:
    """Whether every log key of ``layout`` ends with ``value``."""
    rest = value
    for part in reversed(layout):
        if not rest:
            break
        if not isinstance(part, str):
            return False if part is None else None
        if not (rest.endswith(part) or part.endswith(rest)):
            return False
        rest = rest[: max(len(rest) - len(part), 0)]
    return not rest


def _all(results: list[bool | None]) -> bool | None:
    """False when one result is; None when none is and one could not be decided; else True."""
    return False if False in results else None if None in results else True


def _filter_matches(config: dict[str, Any], trails: list[dict[str, Any]], org_id: str | None) -> bool | None:
    """Whether a notification's key filter passes every log file of ``trails``.

    S3 announces a key only if it matches both the prefix rule and the suffix rule. No trail known:
    one whose account and region doctor does not know.
    """
    rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []

    def matches(layout: list[_Part]) -> bool | None:
        results: list[bool | None] = []
        for rule in rules:
            name, value = str(rule.get("Name", "")).lower(), str(rule.get("Value", ""))
            test = {"prefix": _starts, "suffix": _ends}.get(name)
            results.append(test(layout, value) if test else None)
        return _all(results)

    writers: list[dict[str, Any] | None] = [*trails] or [None]
    return _all([_any([matches(lay) for lay in _layouts(t, org_id)]) for t in writers])


def _created(events: list[str]) -> bool:
    return any(e in ("s3:ObjectCreated:*", "s3:ObjectCreated:Put") for e in events)


def check_notifications(
    ctx: Context,
    bucket: str,
    prefix: str,
    queue_arn: str,
    *,
    trails: list[dict[str, Any]] | None = None,
    org_id: str | None = None,
) -> None:
    """Whether the bucket's new-object notifications reach the queue (directly, by SNS, by EventBridge).

    A notification counts only if its key filter (prefix and suffix) passes every log file the
    ``trails`` writing to the bucket deliver; one that depends on what doctor does not know is
    "could not check", never a pass.
    """
    s3 = ctx.clients.get("s3")
    where = f"s3://{bucket}"
    logs = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    undecided: list[dict[str, Any]] = []

    def covers(config: dict[str, Any]) -> bool:
        result = _filter_matches(config, trails or [], org_id)
        if result is None:
            undecided.append(config)
        return bool(result)

    with ctx.attempt(
        "notifications-not-reaching-queue",
        "the bucket's event notifications",
        Severity.HIGH,
        where,
    ):
        conf = read(s3.get_bucket_notification_configuration, "s3:GetBucketNotification", Bucket=bucket)
        for q in conf.get("QueueConfigurations") or []:
            if q.get("QueueArn") == queue_arn and _created(q.get("Events") or []) and covers(q):
                ctx.report.ok("notifications-not-reaching-queue", where)
                return
        sns = ctx.clients.get("sns")
        for t in conf.get("TopicConfigurations") or []:
            if not _created(t.get("Events") or []) or _filter_matches(t, trails or [], org_id) is False:
                continue
            subs = read(
                sns.list_subscriptions_by_topic, "sns:ListSubscriptionsByTopic", TopicArn=t["TopicArn"]
            ).get("Subscriptions", [])
            if any(s.get("Protocol") == "sqs" and s.get("Endpoint") == queue_arn for s in subs) and covers(t):
                ctx.report.ok("notifications-not-reaching-queue", where)
                return
        if "EventBridgeConfiguration" in conf and _eventbridge_rule(ctx, queue_arn):
            ctx.report.ok("notifications-not-reaching-queue", where)
            return
        if undecided:
            _filter_undecided(ctx, where, undecided)
            return
        notification = json.dumps(
            {
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": logs}]}},
                    }
                ]
            },
            separators=(",", ":"),
        )
        ctx.report.add(
            Finding(
                "notifications-not-reaching-queue",
                Severity.HIGH,
                "new log files are not announced to the queue",
                where,
                "The SQS worker only reads objects it is told about: without a notification for each new "
                "log file nothing is forwarded, and nothing says so.",
                f"aws s3api put-bucket-notification-configuration --bucket {_q(bucket)} "
                f"--notification-configuration {_q(notification)}  (the queue policy must allow "
                "s3.amazonaws.com sqs:SendMessage with aws:SourceArn = the bucket; this replaces the "
                "bucket's other notifications: merge them in)",
                details={"queue": queue_arn},
            )
        )


def _filter_undecided(ctx: Context, where: str, configs: list[dict[str, Any]]) -> None:
    """Notifications to the queue whose key filter doctor cannot hold against the log files' keys."""
    rules = [((c.get("Filter") or {}).get("Key") or {}).get("FilterRules") or [] for c in configs]
    ctx.report.add(
        Finding(
            "notifications-not-reaching-queue",
            Severity.HIGH,
            f"could not check whether the notification filter {json.dumps(rules[0])} passes every "
            "new log file: it depends on an account, region or organization doctor does not know",
            where,
            "doctor cannot rule out that log files are never announced to the queue: a filter it "
            "cannot evaluate is reported, never counted as a pass.",
            "Set [doctor] trail to the trail writing to the bucket, or filter on the prefix "
            "AWSLogs/ (with the trail's S3 key prefix in front) and the suffix .json.gz only",
            checked=False,
            details={"filters": rules},
        )
    )


def _eventbridge_rule(ctx: Context, queue_arn: str) -> bool:
    events = ctx.clients.get("events", ctx.settings.queue_region)
    names = read(events.list_rule_names_by_target, "events:ListRuleNamesByTarget", TargetArn=queue_arn).get(
        "RuleNames", []
    )
    for name in names:
        rule = read(events.describe_rule, "events:DescribeRule", Name=name)
        pattern = json.loads(rule.get("EventPattern") or "{}")
        if rule.get("State") == "ENABLED" and "Object Created" in pattern.get("detail-type", []):
            return True
    return False


_AFFIXES = ("prefix", "suffix", "equals-ignore-case", "wildcard")
"""Content filters EventBridge allows inside ``anything-but`` (each with one value or a list)."""


def _wildcard(pattern: str, name: str) -> bool | None:
    """EventBridge ``wildcard``: ``*`` is any run of characters, a backslash escapes (None: malformed)."""
    parts: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped or ch not in "\\*":
            parts.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            parts.append(".*")
    return None if escaped else re.fullmatch("".join(parts), name, re.DOTALL) is not None


def _affix(op: str, value: Any, name: str) -> bool | None:
    """One of :data:`_AFFIXES` (``prefix`` and ``suffix`` also as ``{"equals-ignore-case": s}``)."""
    fold = op == "equals-ignore-case"
    if op in ("prefix", "suffix") and isinstance(value, dict) and list(value) == ["equals-ignore-case"]:
        value, fold = value["equals-ignore-case"], True
    if not isinstance(value, str):
        return None
    if op == "wildcard":
        return _wildcard(value, name)
    text: str = value.casefold() if fold else value
    name = name.casefold() if fold else name
    if op == "prefix":
        return name.startswith(text)
    if op == "suffix":
        return name.endswith(text)
    return name == text


def _excluded(value: Any, name: str) -> bool | None:
    """Whether ``anything-but``'s ``value`` names ``name`` (None: doctor cannot tell)."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _AFFIXES:
        op, arg = next(iter(value.items()))
        return _any([_affix(op, a, name) for a in (arg if isinstance(arg, list) else [arg])])
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, (dict, list)) for v in values):
        return None
    return name in values


def _any(results: list[bool | None]) -> bool | None:
    """True when one result is; None when none is and one could not be decided; else False."""
    return True if True in results else None if None in results else False


def event_name_matches(condition: Any, name: str) -> bool | None:
    """Whether one entry of an EventBridge pattern's ``eventName`` list matches the call ``name``.

    An exact string, or a content filter: ``prefix``, ``suffix``, ``equals-ignore-case``,
    ``wildcard``, ``anything-but`` (of a value, a list or one of those), ``exists``. None when
    doctor cannot decide (an operator it does not know, a malformed filter): never a guess.
    """
    if isinstance(condition, str):
        return condition == name
    if condition is None or isinstance(condition, (bool, int, float)):
        return False  # eventName is a string: null, numbers and booleans never equal it
    if not isinstance(condition, dict) or len(condition) != 1:
        return None
    op, value = next(iter(condition.items()))
    if op in _AFFIXES:
        return _affix(op, value, name)
    if op == "exists":  # every call CloudTrail sends has an eventName (and the other fields held)
        return value if isinstance(value, bool) else None
    if op in ("numeric", "cidr"):  # a call's name is neither a number nor an address
        return False
    if op == "anything-but":
        excluded = _excluded(value, name)
        return None if excluded is None else not excluded
    return None


def _mentions(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_mentions(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, key) for v in value)
    return False


@dataclass
class _Rule:
    """One enabled rule: the high-risk calls its pattern matches, and what doctor could not decide."""

    name: str
    covered: set[str]
    undecided: set[str]
    """Calls for which the pattern's filters could not be evaluated."""
    why: str = ""
    """What could not be evaluated (for the finding)."""
    targets: int = 0


SIGN_IN = "signin.amazonaws.com"
_FIELDS = ("source", "detail-type", "eventSource", "eventName")
"""What of a CloudTrail event a fast-path pattern is held against (``detail.`` for the last two)."""


def _event(name: str, event_source: str | None) -> dict[str, str]:
    """The fields of call ``name`` as EventBridge delivers it from CloudTrail.

    ``source`` is ``aws.`` and the service; the sign-in event has its own ``detail-type``. No
    ``event_source``: the fields doctor cannot know are left out.
    """
    event = {"eventName": name}
    if event_source:
        event["eventSource"] = event_source
        event["source"] = "aws." + event_source.split(".", 1)[0]
    if event_source == SIGN_IN:
        event["detail-type"] = "AWS Console Sign In via CloudTrail"
    elif event_source:
        event["detail-type"] = "AWS API Call via CloudTrail"
    return event


def _field(conditions: list[Any], value: str | None) -> bool | None:
    """Whether one of a pattern field's entries matches the event's ``value`` (None: not known)."""
    if value is None:
        return None
    return _any([event_name_matches(c, value) for c in conditions])


def _rule(name: str, text: str, calls: dict[str, frozenset[str]]) -> _Rule:
    """Which ``calls`` (name: its event sources) the pattern ``text`` matches as CloudTrail events.

    A call counts only if the pattern's ``source``, ``detail-type``, ``detail.eventSource`` and
    ``detail.eventName`` all match it from each of its event sources. No eventName filter: none.
    """
    try:
        pattern: Any = json.loads(text)
    except ValueError:
        pattern = None
    if not isinstance(pattern, dict):
        return _Rule(name, set(), set(calls), "its event pattern is not a JSON object")
    detail: Any = pattern.get("detail")
    if not isinstance(detail, dict):
        detail = {}
    for key in _FIELDS:
        if _mentions(pattern.get("$or"), key) or _mentions(detail.get("$or"), key):
            return _Rule(name, set(), set(calls), f"{key} is filtered inside $or")
    if detail.get("eventName") is None:
        return _Rule(name, set(), set())
    fields: dict[str, list[Any]] = {}
    for key in _FIELDS:
        conditions = (pattern if key in ("source", "detail-type") else detail).get(key)
        if conditions is None:
            continue
        if not isinstance(conditions, list):
            return _Rule(name, set(), set(calls), f"{key} is {json.dumps(conditions)}, not a list")
        fields[key] = conditions
    covered: set[str] = set()
    undecided: set[str] = set()
    unknown: dict[str, list[Any]] = {}
    for call, sources in calls.items():
        known: list[str | None] = [*sorted(sources)] or [None]
        events = [_event(call, src) for src in known]
        result = _all([_all([_field(c, e.get(k)) for k, c in fields.items()]) for e in events])
        if result:
            covered.add(call)
        elif result is None:
            undecided.add(call)
            for key, event in ((k, e) for k in fields for e in events):
                found = unknown.setdefault(key, [])
                found += [c for c in fields[key] if _field([c], event.get(key)) is None and c not in found]
    why = "; ".join(f"{k} filters doctor cannot evaluate: {json.dumps(v)}" for k, v in unknown.items() if v)
    return _Rule(name, covered, undecided, why)


def _high_risk() -> dict[str, frozenset[str]]:
    """The detection pack's high-risk calls, each with the event sources its rules name."""
    from trailrelay.detection.calls import pack_rules  # noqa: PLC0415 - loads the rule pack

    calls: dict[str, set[str]] = {}
    for rule in pack_rules():
        for call in rule.event_names:
            calls.setdefault(call, set()).update(rule.event_sources)
    return {call: frozenset(sources) for call, sources in calls.items()}


def _enabled_rules(events: Any, calls: dict[str, frozenset[str]]) -> list[_Rule]:
    """Every enabled rule that matches or may match a high-risk call, with its number of targets."""
    paginator = events.get_paginator("list_rules")
    pages = read(lambda p=paginator: list(p.paginate()), "events:ListRules")
    rules: list[_Rule] = []
    for page in pages:
        for item in page.get("Rules", []):
            if item.get("State") != "ENABLED" or not item.get("EventPattern"):
                continue
            rule = _rule(str(item.get("Name")), str(item["EventPattern"]), calls)
            if rule.covered or rule.undecided:
                listed = read(events.list_targets_by_rule, "events:ListTargetsByRule", Rule=rule.name)
                rule.targets = len(listed.get("Targets") or [])
                rules.append(rule)
    return rules


def check_fast_path(ctx: Context, regions: list[str]) -> None:
    """An enabled EventBridge rule with a target for the detection pack's high-risk calls in each region.

    A rule counts only with at least one target (one without sends nothing anywhere), and only for
    the calls its ``source``, ``detail-type``, ``detail.eventSource`` and ``detail.eventName`` all
    match as CloudTrail events. Content filters (prefix, wildcard, anything-but…) are evaluated; one
    doctor cannot evaluate makes the check "could not check" for that rule, never a pass.
    """
    calls = _high_risk()
    names = set(calls)
    for region in regions:
        where = f"events:{region}"
        events = ctx.clients.get("events", region)
        with ctx.attempt(
            "fast-path-missing", f"the EventBridge fast path in {region}", Severity.MEDIUM, where
        ):
            rules = _enabled_rules(events, calls)
            targeted = [r for r in rules if r.targets]
            best = max(targeted, key=lambda r: len(r.covered), default=_Rule("", set(), set()))
            missing = sorted(names - best.covered)
            undecided = [r for r in targeted if r.undecided & set(missing)]
            untargeted = max((r for r in rules if not r.targets), key=lambda r: len(r.covered), default=None)
            severity = Severity.LOW if best.covered else Severity.MEDIUM
            if not missing:
                ctx.report.ok("fast-path-missing", where)
            elif undecided:
                _undecided(ctx, region, undecided, best, missing=missing, severity=severity)
            elif untargeted is not None and len(untargeted.covered) > len(best.covered):
                _no_target(ctx, region, untargeted, missing=missing, severity=severity)
            elif not best.covered:
                ctx.report.add(
                    Finding(
                        "fast-path-missing",
                        Severity.MEDIUM,
                        f"no EventBridge rule sends the high-risk calls to trailrelay in {region}",
                        where,
                        "StopLogging, DeleteTrail and the other calls the detection pack alerts on reach "
                        "the SIEM only with the trail's S3 delivery, 5 to 15 minutes later, instead of "
                        "within seconds.",
                        "sam deploy --template-file deploy/eventbridge-lambda/template.yaml --stack-name "
                        f"trailrelay-fast-path --region {_q(region)} --capabilities CAPABILITY_IAM "
                        "(see docs/deploy/eventbridge-lambda.md)",
                        details={"missing": missing},
                    )
                )
            else:
                ctx.report.add(
                    Finding(
                        "fast-path-missing",
                        Severity.LOW,
                        f"the fast-path rule {best.name} in {region} misses {len(missing)} high-risk calls",
                        where,
                        "The calls it leaves out wait for the trail's S3 delivery (5 to 15 minutes).",
                        f"Match {', '.join(missing)} (eventName, and the source, detail-type and "
                        "eventSource CloudTrail sends them with: AWS Console Sign In via CloudTrail for "
                        "ConsoleLogin) as Events.HighRiskCalls.Properties.Pattern in "
                        "deploy/eventbridge-lambda/template.yaml does (it has them all) and "
                        f"redeploy the stack in {region}",
                        details={"rule": best.name, "missing": missing},
                    )
                )


def _undecided(
    ctx: Context, region: str, rules: list[_Rule], best: _Rule, *, missing: list[str], severity: Severity
) -> None:
    """The rules that may send the calls the best decided rule misses: "could not check", never a pass."""
    names = ("rules " if len(rules) > 1 else "rule ") + ", ".join(r.name for r in rules)
    ctx.report.add(
        Finding(
            "fast-path-missing",
            severity,
            f"could not check whether the EventBridge {names} in {region} sends every high-risk "
            f"call: {rules[0].why}",
            f"events:{region}",
            "doctor cannot rule out that some of the calls the detection pack alerts on wait for the "
            "trail's S3 delivery (5 to 15 minutes): a rule it cannot evaluate is reported, never "
            "counted as a pass.",
            f"List the calls by name, as Events.HighRiskCalls.Properties.Pattern.detail.eventName in "
            "deploy/eventbridge-lambda/template.yaml does, or check the pattern with aws events "
            f"test-event-pattern --region {_q(region)} for each of: {', '.join(missing)}",
            checked=False,
            details={
                "rules": {r.name: r.why for r in rules},
                "best_rule": best.name or None,
                "missing": missing,
            },
        )
    )


def _no_target(ctx: Context, region: str, rule: _Rule, *, missing: list[str], severity: Severity) -> None:
    """A rule that matches the calls (more of them than any rule with a target) but sends them nowhere."""
    ctx.report.add(
        Finding(
            "fast-path-missing",
            severity,
            f"the EventBridge rule {rule.name} in {region} matches {len(rule.covered)} high-risk calls "
            "but has no target: they go nowhere",
            f"events:{region}",
            "A rule without a target sends nothing: StopLogging, DeleteTrail and the other calls the "
            "detection pack alerts on reach the SIEM only with the trail's S3 delivery, 5 to 15 "
            "minutes later.",
            f"aws events put-targets --rule {_q(rule.name)} --region {_q(region)} --targets "
            "Id=trailrelay,Arn=ARN_OF_THE_FAST_PATH_FUNCTION (or deploy "
            "deploy/eventbridge-lambda/template.yaml, which creates the rule with its target)",
            details={"rule": rule.name, "missing": missing},
        )
    )
