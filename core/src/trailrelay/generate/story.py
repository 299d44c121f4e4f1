"""The attack story: a compromised admin IAM user blinding the account's defences.

One account, one region, one afternoon, about twenty minutes, all from an address the
organization never uses (203.0.113.0/24): a console sign-in without MFA, a new access key,
then -- with that key from a Kali box -- StopLogging, DeleteTrail, DeleteFlowLogs, GuardDuty
UpdateDetector(enable=false) and DeleteBucketPublicAccessBlock, with reconnaissance between.
The organization trail itself is out of a member account's reach and keeps recording.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from trailrelay.generate.events import Env
from trailrelay.generate.ids import expiration, hex_token, iso_time, rng_for, uuid4
from trailrelay.generate.world import Account, Actor, Org

__all__ = ["ATTACK_STEPS", "Attack", "build_attack"]

ATTACK_STEPS = (
    "ConsoleLogin",
    "CreateAccessKey",
    "StopLogging",
    "DeleteTrail",
    "DeleteFlowLogs",
    "UpdateDetector",
    "DeleteBucketPublicAccessBlock",
)
"""The event names whose ids :class:`Attack` reports, in the order they happen."""

_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"
_KALI = (
    "aws-cli/2.13.25 md/awscrt#0.16.16 ua/2.0 os/linux#6.5.0-kali3-amd64 md/arch#x86_64 "
    "lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#source "
    "md/distrib#kali.2023 md/prompt#off md/command#"
)


@dataclass(slots=True)
class Attack:
    """The attack's records (with their second of the day) and where they happened."""

    account: Account
    region: str
    user: str
    ip: str
    start: int
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)


class _Story:
    def __init__(self, env: Env, admin: Actor, ip: str) -> None:
        self.env = env
        self.admin = admin
        self.ip = ip
        self.acct = env.acct.id
        self.console_key = env.acct.iam_id(env.rng, "ASIA")
        self.new_key = env.acct.iam_id(env.rng, "AKIA")
        self.login_at = 0
        self.out: list[tuple[int, dict[str, Any]]] = []

    def console_identity(self) -> dict[str, Any]:
        ident = {**self.admin.identity, "accessKeyId": self.console_key}  # keeps CloudTrail's key order
        attrs = {"creationDate": iso_time(self.env.day, self.login_at), "mfaAuthenticated": "false"}
        ident["sessionContext"] = {"sessionIssuer": {}, "webIdFederationData": {}, "attributes": attrs}
        return ident

    def cli_identity(self) -> dict[str, Any]:
        return {**self.admin.identity, "accessKeyId": self.new_key}

    def emit(self, ts: int, source: str, name: str, *, mode: str, ro: bool, **kw: Any) -> dict[str, Any]:
        env = self.env
        rng = env.rng
        service = source.split(".", 1)[0]
        if mode == "signin":
            ident = {k: v for k, v in self.admin.identity.items() if k != "accessKeyId"}
            ua = _BROWSER
        elif mode == "console":
            ident = self.console_identity()
            ua = "AWS Internal"
        else:
            ident = self.cli_identity()
            ua = _KALI + kw.pop("cli")
            if service == "s3":
                ua = f"[{ua}]"
        rec: dict[str, Any] = {
            "eventVersion": kw.get("version", "1.08"),
            "userIdentity": ident,
            "eventTime": iso_time(env.day, ts),
            "eventSource": source,
            "eventName": name,
            "awsRegion": env.region,
            "sourceIPAddress": self.ip,
            "userAgent": ua,
            "requestParameters": kw.get("request"),
            "responseElements": kw.get("response"),
        }
        if "extra" in kw:
            rec["additionalEventData"] = kw["extra"]
        if mode != "signin":
            rec["requestID"] = kw.get("rid") or uuid4(rng)
        rec["eventID"] = uuid4(rng)
        rec["readOnly"] = ro
        if "resources" in kw:
            rec["resources"] = kw["resources"]
        rec["eventType"] = "AwsConsoleSignIn" if mode == "signin" else "AwsApiCall"
        rec["managementEvent"] = True
        rec["recipientAccountId"] = self.acct
        rec["eventCategory"] = "Management"
        host = kw.get("host") or (
            "iam.amazonaws.com" if service == "iam" else f"{service}.{env.region}.amazonaws.com"
        )
        rec["tlsDetails"] = {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": host,
        }
        if mode == "console":
            rec["sessionCredentialFromConsole"] = "true"
        self.out.append((ts, rec))
        return rec


def build_attack(seed: int, org: Org, day: dt.date, account_index: int) -> Attack:
    """Write the attack's records for the account's admin user, in the organization's global region."""
    rng = rng_for(seed, "attack")
    account = org.accounts[account_index]
    admin = account.admin
    if admin is None:
        raise ValueError(f"account {account.id} has no admin user to compromise")
    region = org.global_region
    env = Env(rng, org, account, region, day=day, seed=seed)
    ip = f"203.0.113.{rng.randrange(10, 250)}"
    start = 14 * 3600 + rng.randrange(0, 40 * 60)
    s = _Story(env, admin, ip)
    s.login_at = start
    res = account.res[region]
    trail_arn = f"arn:aws:cloudtrail:{region}:{account.id}:trail/{account.local_trail}"
    bucket = env.bucket()
    host = f"{bucket.name}.s3.{bucket.region}.amazonaws.com"
    flow_log = res.flow_logs[0]
    ids: dict[str, str] = {}

    def at(offset: int) -> int:
        return start + offset + rng.randrange(0, 25)

    def step(name: str, rec: dict[str, Any]) -> None:
        ids[name] = rec["eventID"]

    login = {
        "LoginTo": "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state="
        f"hashArgsFromTB_{region}_{hex_token(rng, 16)}",
        "MobileVersion": "No",
        "MFAUsed": "No",
    }
    step(
        "ConsoleLogin",
        s.emit(
            start,
            "signin.amazonaws.com",
            "ConsoleLogin",
            mode="signin",
            ro=False,
            response={"ConsoleLogin": "Success"},
            extra=login,
            host="signin.aws.amazon.com",
        ),
    )
    s.emit(at(45), "iam.amazonaws.com", "ListUsers", mode="console", ro=True)
    s.emit(
        at(110),
        "iam.amazonaws.com",
        "ListAccessKeys",
        mode="console",
        ro=True,
        request={"userName": admin.name},
    )
    created = at(170)
    key = {
        "accessKeyId": s.new_key,
        "status": "Active",
        "userName": admin.name,
        "createDate": expiration(day, created),
    }
    step(
        "CreateAccessKey",
        s.emit(
            created,
            "iam.amazonaws.com",
            "CreateAccessKey",
            mode="console",
            ro=False,
            request={"userName": admin.name},
            response={"accessKey": key},
        ),
    )
    s.emit(
        at(300), "sts.amazonaws.com", "GetCallerIdentity", mode="cli", ro=True, cli="sts.get-caller-identity"
    )
    s.emit(
        at(345),
        "cloudtrail.amazonaws.com",
        "DescribeTrails",
        mode="cli",
        ro=True,
        version="1.09",
        cli="cloudtrail.describe-trails",
        request={"includeShadowTrails": True},
    )
    step(
        "StopLogging",
        s.emit(
            at(400),
            "cloudtrail.amazonaws.com",
            "StopLogging",
            mode="cli",
            ro=False,
            version="1.09",
            cli="cloudtrail.stop-logging",
            request={"name": trail_arn},
        ),
    )
    step(
        "DeleteTrail",
        s.emit(
            at(460),
            "cloudtrail.amazonaws.com",
            "DeleteTrail",
            mode="cli",
            ro=False,
            version="1.09",
            cli="cloudtrail.delete-trail",
            request={"name": account.local_trail},
        ),
    )
    s.emit(
        at(570),
        "ec2.amazonaws.com",
        "DescribeFlowLogs",
        mode="cli",
        ro=True,
        cli="ec2.describe-flow-logs",
        request={"DescribeFlowLogsRequest": {"MaxResults": 1000}},
    )
    rid = uuid4(rng)
    step(
        "DeleteFlowLogs",
        s.emit(
            at(630),
            "ec2.amazonaws.com",
            "DeleteFlowLogs",
            mode="cli",
            ro=False,
            cli="ec2.delete-flow-logs",
            rid=rid,
            request={"DeleteFlowLogsRequest": {"FlowLogId": {"tag": 1, "content": flow_log}}},
            response={
                "DeleteFlowLogsResponse": {
                    "xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/",
                    "requestId": rid,
                    "unsuccessful": "",
                }
            },
        ),
    )
    s.emit(
        at(760),
        "guardduty.amazonaws.com",
        "ListDetectors",
        mode="cli",
        ro=True,
        cli="guardduty.list-detectors",
    )
    step(
        "UpdateDetector",
        s.emit(
            at(800),
            "guardduty.amazonaws.com",
            "UpdateDetector",
            mode="cli",
            ro=False,
            cli="guardduty.update-detector",
            request={"detectorId": res.detector, "enable": False},
        ),
    )
    s3_req = {"bucketName": bucket.name, "Host": host, "publicAccessBlock": ""}
    s3_res = [{"accountId": account.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket.name}"}]
    s.emit(
        at(930),
        "s3.amazonaws.com",
        "GetBucketPublicAccessBlock",
        mode="cli",
        ro=True,
        version="1.10",
        cli="s3api.get-public-access-block",
        request=s3_req,
        resources=s3_res,
        host=host,
        extra=env.s3_extra(out=342),
        rid=_s3_rid(env),
    )
    step(
        "DeleteBucketPublicAccessBlock",
        s.emit(
            at(990),
            "s3.amazonaws.com",
            "DeleteBucketPublicAccessBlock",
            mode="cli",
            ro=False,
            version="1.10",
            cli="s3api.delete-public-access-block",
            request=s3_req,
            resources=s3_res,
            host=host,
            extra=env.s3_extra(),
            rid=_s3_rid(env),
        ),
    )
    return Attack(account, region, admin.name, ip, start, s.out, ids)


def _s3_rid(env: Env) -> str:
    return "".join(env.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=16))
