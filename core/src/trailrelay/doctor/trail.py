"""Checks of the trail itself: logging, regions, organization, validation, events captured, delivery."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from trailrelay.doctor.aws import read
from trailrelay.doctor.context import Context
from trailrelay.doctor.findings import Finding, Severity

__all__ = ["Coverage", "check_trails", "management_coverage", "organization_id"]

T1562 = "attackers blind defenders by switching logging off or narrowing it (ATT&CK T1562.008)"


def _q(value: str) -> str:
    return shlex.quote(value)


def organization_id(ctx: Context) -> tuple[bool, str | None]:
    """``(known, org id)``: whether the account is in an organization (``known`` False: unreadable)."""
    org = ctx.clients.get("organizations")
    known = False
    org_id: str | None = None
    with ctx.attempt(
        "trail-not-organization", "whether an organization exists", Severity.HIGH, "organizations"
    ):
        try:
            resp = read(
                org.describe_organization,
                "organizations:DescribeOrganization",
                expected=("AWSOrganizationsNotInUseException",),
            )
            org_id = str(resp["Organization"]["Id"])
        except ClientError:  # not in an organization: nothing to check
            org_id = None
        known = True
    return known, org_id


def _selected(ctx: Context, trails: list[dict[str, Any]]) -> list[dict[str, Any]]:
    s = ctx.settings
    if s.trail:
        return [t for t in trails if s.trail in (t.get("Name"), t.get("TrailARN"))]
    if s.bucket:
        return [t for t in trails if t.get("S3BucketName") == s.bucket]
    return trails


def check_trails(ctx: Context, org: tuple[bool, str | None]) -> list[dict[str, Any]]:
    """Check each selected trail; return them (the bucket checks follow their buckets)."""
    ct = ctx.clients.get("cloudtrail")
    s = ctx.settings
    where = s.trail or (f"s3://{s.bucket}" if s.bucket else "cloudtrail")
    selected: list[dict[str, Any]] = []
    with ctx.attempt("no-trail", "which trails exist", Severity.CRITICAL, where):
        resp = read(ct.describe_trails, "cloudtrail:DescribeTrails", includeShadowTrails=True)
        seen: dict[str, dict[str, Any]] = {}
        for t in resp.get("trailList", []):
            seen.setdefault(str(t.get("TrailARN")), t)
        selected = _selected(ctx, list(seen.values()))
        if selected:
            ctx.report.ok("no-trail", where)
        else:
            _no_trail(ctx, where, org[1])
    ctx.report.context["trails"] = [t.get("TrailARN") for t in selected]
    for trail in selected:
        _check_trail(ctx, trail, org)
    return selected


def _no_trail(ctx: Context, where: str, org_id: str | None) -> None:
    s = ctx.settings
    name = s.trail if s.trail and not s.trail.startswith("arn:") else "org-trail"
    bucket = s.bucket or "LOG-BUCKET"
    org_flag = " --is-organization-trail" if org_id else ""
    what = (
        f"no trail named {s.trail}"
        if s.trail
        else (f"no trail delivers to s3://{s.bucket}" if s.bucket else "no CloudTrail trail")
    )
    ctx.report.add(
        Finding(
            "no-trail",
            Severity.CRITICAL,
            what,
            where,
            "Without a trail nothing is recorded beyond the 90-day event history: there is nothing to "
            "forward, verify or search.",
            f"aws cloudtrail create-trail --name {_q(name)} --s3-bucket-name {_q(bucket)} "
            f"--is-multi-region-trail{org_flag} --enable-log-file-validation "
            f"--include-global-service-events && aws cloudtrail start-logging --name {_q(name)}",
        )
    )


def _check_trail(ctx: Context, trail: dict[str, Any], org: tuple[bool, str | None]) -> None:
    arn = str(trail["TrailARN"])
    home = str(trail.get("HomeRegion") or ctx.settings.region or "")
    ct = ctx.clients.get("cloudtrail", home or None)
    name = f"--name {_q(arn)} --region {_q(home)}"
    report = ctx.report

    with ctx.attempt("trail-not-logging", "whether the trail is logging", Severity.CRITICAL, arn):
        status = read(ct.get_trail_status, "cloudtrail:GetTrailStatus", Name=arn)
        if status.get("IsLogging") is False:
            report.add(
                Finding(
                    "trail-not-logging",
                    Severity.CRITICAL,
                    "the trail is not logging",
                    arn,
                    f"Nothing is recorded while logging is stopped; {T1562}.",
                    f"aws cloudtrail start-logging {name}",
                    details={"stopped": str(status.get("TimeLoggingStopped") or "")},
                )
            )
        else:
            report.ok("trail-not-logging", arn)
        _delivery(ctx, arn, status)

    _flag(
        ctx,
        trail,
        "IsMultiRegionTrail",
        "trail-not-multi-region",
        "the trail records one region only",
        "Calls in any other region are not recorded: an attacker working in a region you do not use "
        "(me-south-1, say) leaves no trace in this trail.",
        f"aws cloudtrail update-trail {name} --is-multi-region-trail",
    )
    known, org_id = org
    if known and org_id:
        ctx.report.context["organization"] = org_id
        _flag(
            ctx,
            trail,
            "IsOrganizationTrail",
            "trail-not-organization",
            f"organization {org_id} exists but this is not an organization trail",
            "Member accounts can stop or change their own trails, and new accounts start unlogged; an "
            "organization trail covers every account and members cannot turn it off.",
            f"aws cloudtrail update-trail {name} --is-organization-trail  "
            "(from the management account or the delegated administrator)",
        )
    elif known:
        report.ok("trail-not-organization", arn)
    _flag(
        ctx,
        trail,
        "LogFileValidationEnabled",
        "log-file-validation-off",
        "log file validation is off",
        "Without signed digests nobody can prove a log file was not changed or deleted, and "
        "`trailrelay verify` and [integrity] have nothing to check.",
        f"aws cloudtrail update-trail {name} --enable-log-file-validation",
    )
    _flag(
        ctx,
        trail,
        "IncludeGlobalServiceEvents",
        "global-service-events-off",
        "global service events (IAM, STS, CloudFront) are not recorded",
        "New users, access keys, policy changes and role assumptions go unrecorded: the steps of most "
        "account takeovers.",
        f"aws cloudtrail update-trail {name} --include-global-service-events",
    )
    with ctx.attempt(
        "management-events-incomplete", "which management events are recorded", Severity.CRITICAL, arn
    ):
        selectors = read(ct.get_event_selectors, "cloudtrail:GetEventSelectors", TrailName=arn)
        _management(ctx, arn, home, management_coverage(selectors))


def _flag(  # noqa: PLR0917 - private, one shape for five trail properties
    ctx: Context, trail: dict[str, Any], key: str, check: str, title: str, why: str, fix: str
) -> None:
    arn = str(trail["TrailARN"])
    if trail.get(key) is True:
        ctx.report.ok(check, arn)
        return
    ctx.report.add(Finding(check, Severity.HIGH, title, arn, why, fix))


def _delivery(ctx: Context, arn: str, status: dict[str, Any]) -> None:
    error = status.get("LatestDeliveryError")
    if error:
        ctx.report.add(
            Finding(
                "trail-delivery-error",
                Severity.HIGH,
                f"the last log delivery failed: {error}",
                arn,
                "Log files that cannot be written to the bucket are not forwarded, verified or kept; "
                "CloudTrail retries for a while, then they are lost.",
                "Give CloudTrail write access again: the bucket policy must allow the service principal "
                "cloudtrail.amazonaws.com s3:PutObject on arn:aws:s3:::BUCKET/[PREFIX/]AWSLogs/* with "
                f"aws:SourceArn = {arn} (and the KMS key policy must let CloudTrail encrypt); check with "
                f"aws cloudtrail get-trail-status --name {_q(arn)}",
                details={"error": str(error)},
            )
        )
    else:
        ctx.report.ok("trail-delivery-error", arn)
    digest_error = status.get("LatestDigestDeliveryError")
    if digest_error:
        ctx.report.add(
            Finding(
                "digest-delivery-error",
                Severity.HIGH,
                f"the last digest delivery failed: {digest_error}",
                arn,
                "Log files without digests cannot be proven unchanged (`trailrelay verify` reports them "
                "as not covered).",
                "Fix the bucket policy or KMS key policy for the digest folder "
                "(…/AWSLogs/…/CloudTrail-Digest/); check with "
                f"aws cloudtrail get-trail-status --name {_q(arn)}",
                details={"error": str(digest_error)},
            )
        )


@dataclass(frozen=True, slots=True)
class Coverage:
    """Which management events a trail's selectors record."""

    level: str
    """``all``, ``excluded`` (some event sources left out), ``partial`` (read or write only, or
    narrowed by another field), ``none`` or ``unknown`` (no selectors in the answer)."""
    detail: str = ""


def management_coverage(resp: dict[str, Any]) -> Coverage:
    """What basic and advanced event selectors record of management events."""
    basic = resp.get("EventSelectors") or []
    advanced = resp.get("AdvancedEventSelectors") or []
    if not basic and not advanced:
        return Coverage("unknown", "GetEventSelectors returned no selectors")
    kinds: set[str] = set()  # "read", "write": recorded by some selector, maybe minus some sources
    full: set[str] = set()  # recorded by a selector that leaves out no event source
    excluded: set[str] = set()
    narrowed: list[str] = []
    for sel in basic:
        if not sel.get("IncludeManagementEvents", True):
            continue
        rw = sel.get("ReadWriteType", "All")
        these = {"read", "write"} if rw == "All" else ({"read"} if rw == "ReadOnly" else {"write"})
        kinds |= these
        if sel.get("ExcludeManagementEventSources"):
            excluded |= set(sel["ExcludeManagementEventSources"])
        else:
            full |= these
    for sel in advanced:
        fields = {f.get("Field"): f for f in sel.get("FieldSelectors") or []}
        category = fields.pop("eventCategory", None)
        if category is None or "Management" not in (category.get("Equals") or []):
            continue
        these = {"read", "write"}
        ro = fields.pop("readOnly", None)
        if ro is not None:
            values = {str(v).lower() for v in ro.get("Equals") or []}
            these = {"read" if v == "true" else "write" for v in values} or these
        src = fields.get("eventSource")
        left_out: set[str] = set()
        if src is not None and set(src) <= {"Field", "NotEquals"}:
            left_out = set(src.get("NotEquals") or [])
            fields.pop("eventSource")
        if fields:
            by = ", ".join(sorted(map(str, fields)))
            narrowed.append(f"{sel.get('Name') or 'selector'} narrows by {by}")
            continue
        kinds |= these
        excluded |= left_out
        if not left_out:
            full |= these
    if not kinds and narrowed:
        return Coverage("partial", "; ".join(narrowed))
    if not kinds:
        return Coverage("none", "no selector records management events")
    if kinds != {"read", "write"}:
        return Coverage("partial", f"{'/'.join(sorted(kinds))} events only")
    if full != {"read", "write"}:
        return Coverage("excluded", f"left out: {', '.join(sorted(excluded))}")
    return Coverage("all", "; ".join(narrowed))


def _management(ctx: Context, arn: str, home: str, cov: Coverage) -> None:
    everything = [{"Field": "eventCategory", "Equals": ["Management"]}]
    selector = _q(
        json.dumps([{"Name": "Management events", "FieldSelectors": everything}], separators=(",", ":"))
    )
    fix = (
        f"aws cloudtrail put-event-selectors --trail-name {_q(arn)} --region {_q(home)} "
        f"--advanced-event-selectors {selector}  (put-event-selectors replaces every selector: add "
        "your data-event selectors from `aws cloudtrail get-event-selectors` to the list)"
    )
    if cov.level == "all":
        ctx.report.ok("management-events-incomplete", arn)
        return
    if cov.level == "unknown":
        ctx.report.add(
            Finding(
                "management-events-incomplete",
                Severity.CRITICAL,
                f"could not check which management events are recorded: {cov.detail}",
                arn,
                "CloudTrail always answers with at least one selector; an empty answer says nothing.",
                f"Inspect with aws cloudtrail get-event-selectors --trail-name {_q(arn)}",
                checked=False,
            )
        )
        return
    severity, title, why = {
        "none": (
            Severity.CRITICAL,
            "the trail records no management events",
            "StopLogging, DeleteTrail, IAM and every other control-plane call go unrecorded.",
        ),
        "partial": (
            Severity.HIGH,
            f"the trail records only some management events ({cov.detail})",
            (
                "Reads (GetSecretValue, Describe*, List*) show reconnaissance and theft; writes show "
                "changes. A trail with one half misses the other."
            ),
        ),
        "excluded": (
            Severity.MEDIUM,
            f"the trail leaves out management events of some services ({cov.detail})",
            (
                "Calls to the left-out services (KMS Decrypt, RDS Data API) are not recorded; a cost "
                "choice that also hides their misuse."
            ),
        ),
    }[cov.level]
    ctx.report.add(
        Finding(
            "management-events-incomplete", severity, title, arn, why, fix, details={"detail": cov.detail}
        )
    )
