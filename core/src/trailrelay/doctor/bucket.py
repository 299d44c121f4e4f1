"""Checks of the log bucket: Object Lock, lifecycle, public access, who may write, encryption."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from trailrelay.doctor.aws import Denied, ReadFailed, read
from trailrelay.doctor.context import Context
from trailrelay.doctor.findings import Finding, Severity

__all__ = ["PolicyWriter", "check_bucket", "policy_writers"]

CLOUDTRAIL = "cloudtrail.amazonaws.com"
PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
# Actions that write, overwrite or delete log files or loosen the bucket's protection.
WRITE_ACTIONS = (
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketAcl",
)
SCOPING_OPERATORS = frozenset(
    {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike"}
)
"""Condition operators that can tie CloudTrail's writes to someone (``…Not…``, ``…IfExists`` and
``ForAllValues:`` ones let requests without the key, or with any other value, through)."""


def _q(value: str) -> str:
    return shlex.quote(value)


@dataclass(frozen=True, slots=True)
class PolicyWriter:
    """One Allow statement that lets someone write to the bucket."""

    sid: str
    principal: str
    kind: str
    """``public`` (anyone), ``cloudtrail-unscoped`` (CloudTrail without an aws:SourceArn naming a
    concrete account's trail, an aws:SourceAccount or an aws:SourceOrgID) or ``other`` (any
    principal that is not CloudTrail's service principal)."""
    actions: tuple[str, ...]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _writes(statement: dict[str, Any]) -> tuple[str, ...]:
    if "NotAction" in statement:  # allow everything but a few: treat as write
        return ("NotAction",)
    patterns = [str(a).lower() for a in _list(statement.get("Action", []))]
    return tuple(w for w in WRITE_ACTIONS if any(fnmatch.fnmatchcase(w.lower(), p) for p in patterns))


def _principals(statement: dict[str, Any]) -> list[tuple[str, str]]:
    """``(type, value)`` pairs; NotPrincipal with Allow counts as everyone."""
    if "NotPrincipal" in statement:
        return [("AWS", "*")]
    principal = statement.get("Principal", {})
    if principal == "*":
        return [("AWS", "*")]
    if not isinstance(principal, dict):
        return [("AWS", str(principal))]
    return [(str(kind), str(v)) for kind, values in principal.items() for v in _list(values)]


def _trail_arn(value: str) -> bool:
    """A CloudTrail ARN of one concrete account (wildcards only in the region or the trail name)."""
    parts = value.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[2] == "cloudtrail" and _account(parts[4])


def _account(value: str) -> bool:
    return re.fullmatch(r"[0-9]{12}", value) is not None


def _organization(value: str) -> bool:
    return bool(value) and not any(c in value for c in "*?")


_SCOPES = {"aws:sourcearn": _trail_arn, "aws:sourceaccount": _account, "aws:sourceorgid": _organization}
"""The condition keys that scope CloudTrail's writes, each with what a value must be to do so."""


def _scoped(statement: dict[str, Any]) -> bool:
    """Whether a condition ties the statement to concrete trails, accounts or an organization.

    The key must be there with every value concrete: ``aws:SourceArn = arn:aws:cloudtrail:*`` is
    every account's trail, not scoped (``arn:aws:cloudtrail:*:111122223333:trail/*`` is).
    """
    condition = statement.get("Condition") or {}
    for operator, keys in condition.items():
        if str(operator).lower() not in SCOPING_OPERATORS or not isinstance(keys, dict):
            continue
        for key, values in keys.items():
            concrete = _SCOPES.get(str(key).lower())
            if concrete is not None and values and all(concrete(str(v)) for v in _list(values)):
                return True
    return False


def policy_writers(policy: dict[str, Any]) -> list[PolicyWriter]:
    """Every Allow statement (and principal) of a bucket policy that may write beyond CloudTrail's."""
    out: list[PolicyWriter] = []
    for i, st in enumerate(_list(policy.get("Statement", []))):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        actions = _writes(st)
        if not actions:
            continue
        sid = str(st.get("Sid") or f"statement {i + 1}")
        for kind, value in _principals(st):
            if value == "*":
                out.append(PolicyWriter(sid, "*", "public", actions))
            elif kind == "Service" and value == CLOUDTRAIL:
                if not _scoped(st):
                    out.append(PolicyWriter(sid, value, "cloudtrail-unscoped", actions))
            else:
                out.append(PolicyWriter(sid, f"{kind}:{value}", "other", actions))
    return out


def check_bucket(ctx: Context, bucket: str, prefix: str, *, kms: bool, trail_arn: str | None) -> None:
    """Every bucket check for the trail's log bucket ``bucket`` (log files under ``prefix``)."""
    s3 = ctx.clients.get("s3")
    where = f"s3://{bucket}"
    held = _object_lock(ctx, s3, bucket, where)
    _lifecycle(ctx, s3, bucket, prefix, where, held=held)
    _public_access(ctx, s3, bucket, where)
    _policy(ctx, s3, bucket, prefix, trail_arn=trail_arn)
    _encryption(ctx, s3, bucket, kms=kms, trail_arn=trail_arn)


def _object_lock(ctx: Context, s3: Any, bucket: str, where: str) -> bool:
    """The Object Lock checks; True when a default retention holds each version long enough."""
    days = ctx.settings.retention_days
    held = False
    lock_json = json.dumps(
        {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
        },
        separators=(",", ":"),
    )
    fix = (
        f"aws s3api put-bucket-versioning --bucket {_q(bucket)} --versioning-configuration Status=Enabled && "
        f"aws s3api put-object-lock-configuration --bucket {_q(bucket)} --object-lock-configuration "
        f"{_q(lock_json)}"
    )
    with ctx.attempt("bucket-object-lock", "the bucket's Object Lock configuration", Severity.HIGH, where):
        try:
            conf = read(
                s3.get_object_lock_configuration,
                "s3:GetBucketObjectLockConfiguration",
                expected=("ObjectLockConfigurationNotFoundError",),
                Bucket=bucket,
            )["ObjectLockConfiguration"]
        except ClientError:
            conf = {}
        rule = (conf.get("Rule") or {}).get("DefaultRetention") or {}
        if conf.get("ObjectLockEnabled") != "Enabled" or not rule:
            what = (
                "Object Lock is off" if conf.get("ObjectLockEnabled") != "Enabled" else "no default retention"
            )
            ctx.report.add(
                Finding(
                    "bucket-object-lock",
                    Severity.HIGH,
                    f"log files can be deleted or overwritten: {what}",
                    where,
                    "Whoever gets s3:DeleteObject on the bucket (a stolen admin role, a careless "
                    "lifecycle rule) can remove the evidence; Object Lock in compliance mode makes each "
                    f"log file undeletable for {days} days, even by the root user.",
                    fix,
                )
            )
            return held
        mode = str(rule.get("Mode"))
        kept = int(rule.get("Days") or 0) or 365 * int(rule.get("Years") or 0)
        held = kept >= days  # lifecycle rules cannot delete a locked version, in either mode
        if mode != "COMPLIANCE":
            ctx.report.add(
                Finding(
                    "bucket-object-lock-mode",
                    Severity.MEDIUM,
                    f"Object Lock is in {mode.lower()} mode, not compliance",
                    where,
                    "Governance-mode retention can be lifted by anyone with s3:BypassGovernanceRetention; "
                    "compliance mode cannot be lifted by anyone until it expires.",
                    fix,
                    details={"mode": mode, "days": kept},
                )
            )
        else:
            ctx.report.ok("bucket-object-lock-mode", where)
        if kept < days:
            ctx.report.add(
                Finding(
                    "bucket-retention-short",
                    Severity.MEDIUM,
                    f"log files are locked for {kept} days, fewer than the {days} asked for",
                    where,
                    "After the lock expires log files can be deleted; investigations (and most audit "
                    "regimes) reach back further.",
                    fix,
                    details={"days": kept, "wanted": days},
                )
            )
        else:
            ctx.report.ok("bucket-retention-short", where)
        ctx.report.ok("bucket-object-lock", where)
    return held


def _covers(rule: dict[str, Any], prefix: str) -> bool:
    flt = rule.get("Filter") or {}
    rule_prefix = rule.get("Prefix")
    if rule_prefix is None:
        rule_prefix = flt.get("Prefix", (flt.get("And") or {}).get("Prefix", ""))
    logs = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    return logs.startswith(str(rule_prefix or "")) or str(rule_prefix).startswith(logs)


def _deletes_early(rule: dict[str, Any], days: int, *, held: bool) -> list[str]:
    """How an enabled lifecycle rule deletes log files before ``days`` (empty: it does not).

    ``Expiration.Date`` deletes every log file on that date, whatever its age, and every later
    one as it comes. ``NoncurrentVersionExpiration`` makes final the deletion (or overwrite) of a
    log file: unless Object Lock ``held`` each version long enough, it is gone after that many
    days (a rule that keeps newer noncurrent versions keeps a log file's only one).
    """
    found: list[str] = []
    expiration = rule.get("Expiration") or {}
    if expiration.get("Date") is not None:
        date = expiration["Date"]
        found.append(f"every log file on {date.date() if isinstance(date, dt.datetime) else date}")
    if expiration.get("Days") is not None and int(expiration["Days"]) < days:
        found.append(f"{expiration['Days']} days")
    noncurrent = rule.get("NoncurrentVersionExpiration") or {}
    after = noncurrent.get("NoncurrentDays")
    if not held and after is not None and int(after) < days and not noncurrent.get("NewerNoncurrentVersions"):
        found.append(f"deleted or overwritten log files {after} days later")
    return found


def _lifecycle(ctx: Context, s3: Any, bucket: str, prefix: str, where: str, *, held: bool) -> None:
    days = ctx.settings.retention_days
    with ctx.attempt("bucket-lifecycle-expires-logs", "the bucket's lifecycle rules", Severity.MEDIUM, where):
        try:
            rules = read(
                s3.get_bucket_lifecycle_configuration,
                "s3:GetLifecycleConfiguration",
                expected=("NoSuchLifecycleConfiguration",),
                Bucket=bucket,
            ).get("Rules", [])
        except ClientError:
            rules = []
        short = [
            (r.get("ID"), how)
            for r in rules
            if r.get("Status") == "Enabled"
            and _covers(r, prefix)
            and (how := _deletes_early(r, days, held=held))
        ]
        if not short:
            ctx.report.ok("bucket-lifecycle-expires-logs", where)
            return
        names = ", ".join(f"{name or '?'} ({'; '.join(how)})" for name, how in short)
        ctx.report.add(
            Finding(
                "bucket-lifecycle-expires-logs",
                Severity.MEDIUM,
                f"lifecycle rules delete log files before {days} days: {names}",
                where,
                "Log files are gone before the retention asked for; an attacker who waits them out "
                "(or deletes them and waits) leaves no trace.",
                f"aws s3api get-bucket-lifecycle-configuration --bucket {_q(bucket)} > lifecycle.json; set "
                f"Expiration.Days to at least {days} (and NoncurrentVersionExpiration.NoncurrentDays to at "
                f"least {days}, or lock the bucket for that long), and remove Expiration.Date, in the rules "
                f"named, then aws s3api put-bucket-lifecycle-configuration --bucket {_q(bucket)} "
                "--lifecycle-configuration file://lifecycle.json",
                details={"rules": [name for name, _ in short]},
            )
        )


def _public_access(ctx: Context, s3: Any, bucket: str, where: str) -> None:
    flags = ",".join(f"{f}=true" for f in PAB_FLAGS)
    fix = (
        f"aws s3api put-public-access-block --bucket {_q(bucket)} --public-access-block-configuration {flags}"
    )
    with ctx.attempt("bucket-public", "whether the bucket policy is public", Severity.CRITICAL, where):
        try:
            status = read(
                s3.get_bucket_policy_status,
                "s3:GetBucketPolicyStatus",
                expected=("NoSuchBucketPolicy",),
                Bucket=bucket,
            )
            public = bool(status.get("PolicyStatus", {}).get("IsPublic"))
        except ClientError:
            public = False
        if public:
            ctx.report.add(
                Finding(
                    "bucket-public",
                    Severity.CRITICAL,
                    "the bucket policy makes the bucket public",
                    where,
                    "Anyone on the internet can read (or write) the organization's complete API history.",
                    f"Remove the public statements from the bucket policy, then {fix}",
                )
            )
        else:
            ctx.report.ok("bucket-public", where)
    with ctx.attempt(
        "bucket-public-access-not-blocked", "the bucket's public access block", Severity.HIGH, where
    ):
        try:
            conf = read(
                s3.get_public_access_block,
                "s3:GetBucketPublicAccessBlock",
                expected=("NoSuchPublicAccessBlockConfiguration",),
                Bucket=bucket,
            )["PublicAccessBlockConfiguration"]
        except ClientError:
            conf = {}
        off = [f for f in PAB_FLAGS if conf.get(f) is not True]
        if not off:
            ctx.report.ok("bucket-public-access-not-blocked", where)
            return
        account_note = _account_block(ctx, off)
        if account_note is None:
            ctx.report.ok("bucket-public-access-not-blocked", where)
            return
        ctx.report.add(
            Finding(
                "bucket-public-access-not-blocked",
                Severity.HIGH,
                f"public access is not blocked: {', '.join(off)} off",
                where,
                "One wrong bucket policy or ACL away from publishing every log file; the public access "
                "block refuses such a change outright.",
                fix,
                details={"off": off, "account_block": account_note},
            )
        )


def _account_block(ctx: Context, off: list[str]) -> str | None:
    """None when the account-level block covers what the bucket leaves off; else why it does not."""
    try:
        account = read(ctx.clients.get("sts").get_caller_identity, "sts:GetCallerIdentity")["Account"]
        conf = read(
            ctx.clients.get("s3control").get_public_access_block,
            "s3:GetAccountPublicAccessBlock",
            expected=("NoSuchPublicAccessBlockConfiguration",),
            AccountId=account,
        )["PublicAccessBlockConfiguration"]
    except ClientError:
        return "no account-level block either"
    except Denied as exc:
        return f"account-level block not readable ({exc})"
    except ReadFailed as exc:
        return f"account-level block not readable ({exc})"
    if all(conf.get(f) is True for f in off):
        return None
    return "the account-level block does not cover it either"


def _policy(ctx: Context, s3: Any, bucket: str, prefix: str, *, trail_arn: str | None) -> None:
    where = f"s3://{bucket}"
    key = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}AWSLogs/*"
    source = trail_arn or "arn:aws:cloudtrail:REGION:ACCOUNT:trail/NAME"
    statement = json.dumps(
        {
            "Sid": "AWSCloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": CLOUDTRAIL},
            "Action": "s3:PutObject",
            "Resource": key,
            "Condition": {
                "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": source}
            },
        },
        separators=(",", ":"),
    )
    with ctx.attempt(
        "bucket-policy-write", "who may write to the bucket (its policy)", Severity.CRITICAL, where
    ):
        try:
            text = read(
                s3.get_bucket_policy, "s3:GetBucketPolicy", expected=("NoSuchBucketPolicy",), Bucket=bucket
            )["Policy"]
        except ClientError:
            ctx.report.add(
                Finding(
                    "bucket-policy-write",
                    Severity.HIGH,
                    "the bucket has no policy: CloudTrail cannot write to it",
                    where,
                    "A trail delivering here fails every delivery; nothing reaches the bucket.",
                    f"aws s3api put-bucket-policy --bucket {_q(bucket)} --policy "
                    f"{_q(json.dumps({'Version': '2012-10-17', 'Statement': [json.loads(statement)]}))}",
                )
            )
            return
        writers = policy_writers(json.loads(text))
        if not writers:
            ctx.report.ok("bucket-policy-write", where)
            return
        worst = max(
            Severity.CRITICAL
            if w.kind == "public"
            else Severity.HIGH
            if w.kind == "other"
            else Severity.MEDIUM
            for w in writers
        )
        who = "; ".join(f"{w.sid}: {w.principal} ({', '.join(w.actions[:3])})" for w in writers)
        ctx.report.add(
            Finding(
                "bucket-policy-write",
                worst,
                f"the bucket policy lets more than this trail's CloudTrail write: {who}",
                where,
                "Anyone else who can write, delete or re-configure the log bucket can plant, remove or "
                "hide log files; CloudTrail's own statement needs aws:SourceArn (this trail, in a named "
                "account), aws:SourceAccount or aws:SourceOrgID (your organization), or any account's "
                "trail could write into it.",
                "Keep only CloudTrail's statement for writes, scoped to your trail, e.g. "
                f"{statement}; then aws s3api put-bucket-policy --bucket {_q(bucket)} --policy file://policy.json",
                details={"statements": [w.sid for w in writers], "kinds": sorted({w.kind for w in writers})},
            )
        )


def _encryption(ctx: Context, s3: Any, bucket: str, *, kms: bool, trail_arn: str | None) -> None:
    where = f"s3://{bucket}"
    if kms:  # every trail writing here encrypts with its KMS key
        ctx.report.ok("logs-not-kms-encrypted", where)
        return
    with ctx.attempt("logs-not-kms-encrypted", "the bucket's default encryption", Severity.INFO, where):
        try:
            rules = read(
                s3.get_bucket_encryption,
                "s3:GetEncryptionConfiguration",
                expected=("ServerSideEncryptionConfigurationNotFoundError",),
                Bucket=bucket,
            )["ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError:  # no configuration: S3 applies SSE-S3 to every bucket since 2023
            rules = []
        algorithms = {
            str((r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")) for r in rules
        }
        if algorithms & {"aws:kms", "aws:kms:dsse"}:
            ctx.report.ok("logs-not-kms-encrypted", where)
            return
        ctx.report.add(
            Finding(
                "logs-not-kms-encrypted",
                Severity.INFO,
                "log files are encrypted with S3-managed keys (SSE-S3), not a KMS key",
                where,
                "With SSE-KMS reading a log file also needs kms:Decrypt on the trail's key: a second, "
                "separately audited permission between an attacker with s3:GetObject and your logs.",
                f"aws cloudtrail update-trail --name {_q(trail_arn or 'TRAIL')} "
                "--kms-key-id alias/cloudtrail  (the key policy "
                "must allow cloudtrail.amazonaws.com kms:GenerateDataKey*; readers need kms:Decrypt)",
            )
        )
