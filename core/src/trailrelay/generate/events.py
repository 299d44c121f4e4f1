"""Assembling one CloudTrail record: identity, client, TLS, errors and the event's own fields."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from trailrelay.generate.ids import B32, UPPER_DIGITS, iso_time, token, uuid4
from trailrelay.generate.world import Account, Actor, Bucket, Org, RegionRes

__all__ = ["Call", "Env", "Template", "assemble"]

SIGNIN = "signin.amazonaws.com"
_DENIED_PLAIN = frozenset({"iam", "sts", "s3", "rds", "elasticloadbalancing", "autoscaling", "monitoring"})
_CLI_SERVICE = {
    "s3": "s3api", "monitoring": "cloudwatch", "elasticloadbalancing": "elbv2", "config": "configservice",
}  # fmt: skip
_HUMAN_KINDS = frozenset({"user", "bot", "sso", "ci", "workload", "lambda"})
_TLS = (
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
)
_CLI_PLATFORMS = (
    "os/macos#23.4.0 md/arch#arm64 lang/python#3.11.8",
    "os/linux#6.5.0-1016-aws md/arch#x86_64 lang/python#3.11.8",
    "os/windows#10 md/arch#amd64 lang/python#3.11.8",
)
_BOTO = (
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.79-99.167.amzn2023.x86_64 md/arch#x86_64 "
    "lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69"
)
_TERRAFORM = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.42.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1 "
    "md/GOOS#linux md/GOARCH#amd64"
)
_JAVA = (
    "aws-sdk-java/2.25.11 Linux/5.10.213-201.855.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS "
    "Java/17.0.10 vendor/Amazon.com_Inc. md/io#sync md/http#Apache ua/2.0 cfg/retry-mode#legacy"
)
_GO = "aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64"
_LAMBDA_PY = (
    "Boto3/1.34.42 md/Botocore#1.34.42 ua/2.0 os/linux#5.10.213-226.866.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy "
    "Botocore/1.34.42"
)
_SSM_AGENT = "aws-sdk-go/1.50.38 (go1.21.8; linux; amd64) amazon-ssm-agent/3.3.131.0"
_CONSOLE = ("AWS Internal", "console.amazonaws.com")
_S3_CONSOLE = (
    "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.750 Linux/5.10.217-182.855.amzn2int.x86_64 "
    "OpenJDK_64-Bit_Server_VM/25.412-b08 java/1.8.0_412 vendor/Oracle_Corporation cfg/retry-mode/standard]"
)
BROWSERS = (
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36"
    ),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.3.1 Safari/605.1.15"
    ),
)


class Call(NamedTuple):
    """What a template's builder returns: the API-specific parts of one record."""

    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    resources: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None
    """``additionalEventData``."""
    host: str | None = None
    """``tlsDetails.clientProvidedHostHeader`` when it is not ``<service>.<region>.amazonaws.com``."""
    via: str | None = None
    """A service calling on the principal's behalf: becomes invokedBy, source IP and user agent."""
    error: tuple[str, str] | None = None
    service_details: dict[str, Any] | None = None


Builder = Callable[["Env"], Call]


@dataclass(frozen=True, slots=True)
class Template:
    """One kind of API call or service event, with who makes it and how often."""

    source: str
    name: str
    weight: float
    read_only: bool
    kinds: frozenset[str]
    build: Builder
    version: str = "1.08"
    scope: str = "regional"
    """``regional``, ``global`` (logged in us-east-1) or ``home`` (the trail's home region)."""
    data: bool = False
    event_type: str = "AwsApiCall"
    errors: tuple[tuple[str, str, float], ...] = ()
    services: frozenset[str] | None = None
    mgmt_only: bool = False

    @property
    def service(self) -> str:
        """The IAM service prefix (``ec2`` for ``ec2.amazonaws.com``)."""
        return self.source.split(".", 1)[0]

    @property
    def action(self) -> str:
        """The IAM action name (Lambda's dated event names lose their suffix)."""
        return re.sub(r"\d{8}(v\d)?$", "", self.name)


def cli_command(t: Template) -> str:
    """``md/command#ec2.describe-instances`` style suffix for aws-cli user agents."""
    kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", t.action).lower()
    return f"md/command#{_CLI_SERVICE.get(t.service, t.service)}.{kebab}"


class Env:
    """The world as seen from one account and region, plus per-record scratch state."""

    def __init__(
        self, rng: random.Random, org: Org, account: Account, region: str, *, day: dt.date, seed: int
    ) -> None:
        self.rng = rng
        self.org = org
        self.acct = account
        self.region = region
        self.day = day
        self.prefix = day.isoformat()
        self.res: RegionRes = account.res[region]
        self.buckets: list[Bucket] = [b for b in account.buckets if b.region == region] or account.buckets
        self.actor: Actor = account.actors[0]
        self.ts = 0
        self.rid = ""
        self._seed = seed
        self._sessions: dict[tuple[int, int], tuple[str, str]] = {}
        self._cli: dict[str, str] = {}
        self.by_kind: dict[str, list[Actor]] = {}
        for a in account.actors:
            if a.region in (None, region):
                self.by_kind.setdefault(a.kind, []).append(a)

    # -- helpers for builders -------------------------------------------------------------
    def pick(self, items: list[str] | tuple[str, ...]) -> str:
        """Pick one item, uniformly."""
        return items[int(self.rng.random() * len(items))]

    def pick_actor(self, kind: str) -> Actor:
        """Pick one actor of ``kind`` usable in this region (the kind must exist)."""
        pool = self.by_kind[kind]
        return pool[int(self.rng.random() * len(pool))]

    def bucket(self) -> Bucket:
        """Pick a bucket homed in this region."""
        return self.buckets[int(self.rng.random() * len(self.buckets))]

    def when(self, offset: int = 0) -> str:
        """Return the ISO time of the current record plus ``offset`` seconds."""
        return iso_time(self.day, self.ts + offset)

    def s3_extra(self, out: int = 0, inb: int = 0) -> dict[str, Any]:
        """Build S3's ``additionalEventData`` block."""
        return {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": inb,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": base64.b64encode(self.rng.randbytes(56)).decode(),
            "bytesTransferredOut": out,
        }

    def s3_bucket_call(self, b: Bucket, sub: str, out: int = 0, **params: Any) -> Call:
        """Build a bucket-level S3 management call on sub-resource ``sub`` (``policy``, ``acl``...)."""
        host = f"{b.name}.s3.{b.region}.amazonaws.com"
        req: dict[str, Any] = {"bucketName": b.name, "Host": host, **params}
        if sub:
            req[sub] = ""
        res = [{"accountId": self.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b.name}"}]
        return Call(req, None, res, self.s3_extra(out=out), host)

    def key_arn(self) -> str:
        """Pick a KMS key ARN of this account and region."""
        return self.pick(self.res.kms_keys)

    # -- record assembly ------------------------------------------------------------------
    def session(self, actor: Actor, ts: int) -> tuple[str, str]:
        """(temporary ``ASIA`` key, creationDate) of the actor's session covering ``ts``."""
        n = (ts - actor.session_minute * 60) // 3600
        got = self._sessions.get((actor.index, n))
        if got is None:
            h = hashlib.blake2b(f"{self._seed}/{self.acct.id}/{actor.index}/{n}".encode(), digest_size=16)
            key = "ASIA" + self.acct.key_infix + "".join(B32[b & 31] for b in h.digest()[:8])
            got = (key, iso_time(self.day, n * 3600 + actor.session_minute * 60))
            self._sessions[(actor.index, n)] = got
        return got

    def identity(self, actor: Actor, ts: int, console: bool, signin: bool) -> dict[str, Any]:
        """Build the ``userIdentity`` block for the actor at ``ts``."""
        base = actor.identity
        kind = actor.kind
        if signin:  # sign-in events name the user but no access key
            return {k: v for k, v in base.items() if k != "accessKeyId"}
        if kind in ("service", "svcevent", "idc") or (kind in ("user", "bot") and not console):
            return base
        key, created = self.session(actor, ts)
        mfa = "true" if actor.mfa and kind in ("user", "root") else "false"
        attributes = {"creationDate": created, "mfaAuthenticated": mfa}
        if kind in ("user", "bot", "root"):
            ctx = {"sessionIssuer": {}, "webIdFederationData": {}, "attributes": attributes}
        else:
            issuer = base["sessionContext"]
            ctx = {
                "sessionIssuer": issuer["sessionIssuer"],
                "webIdFederationData": {},
                "attributes": attributes,
            }
            if "ec2RoleDelivery" in issuer:
                ctx["ec2RoleDelivery"] = issuer["ec2RoleDelivery"]
        # CloudTrail's key order: ..., accountId, accessKeyId, (userName), sessionContext, invokedBy
        ident = {k: v for k, v in base.items() if k not in ("accessKeyId", "sessionContext", "invokedBy")}
        ident["accessKeyId"] = key
        if "userName" in ident:
            ident["userName"] = ident.pop("userName")
        ident["sessionContext"] = ctx
        if "invokedBy" in base:
            ident["invokedBy"] = base["invokedBy"]
        return ident

    def client(self, t: Template, actor: Actor, console: bool) -> tuple[str, str]:
        """(sourceIPAddress, userAgent) for a call by ``actor``."""
        rng = self.rng
        kind = actor.kind
        ip = actor.ips[int(rng.random() * len(actor.ips))]
        if kind in ("service", "slr", "svcevent"):
            return ip, ip
        if console:
            ua = _S3_CONSOLE if t.service == "s3" else _CONSOLE[int(rng.random() * 2)]
            return ip, ua
        if kind == "idc":
            ua = BROWSERS[actor.index % len(BROWSERS)]
        elif kind in ("user", "sso"):
            ua = self.aws_cli(t, actor.index) if rng.random() < 0.7 else _BOTO
        elif kind in ("bot", "ci"):
            ua = _TERRAFORM if rng.random() < 0.6 else self.aws_cli(t, actor.index)
        elif kind == "workload":
            ua = _SSM_AGENT if t.service == "ssm" else (_JAVA if actor.index % 2 else _GO)
        else:
            ua = _LAMBDA_PY
        return ip, (f"[{ua}]" if t.service == "s3" else ua)

    def aws_cli(self, t: Template, index: int) -> str:
        """Build an aws-cli v2 user agent naming the command."""
        cmd = self._cli.get(t.name)
        if cmd is None:
            cmd = self._cli[t.name] = cli_command(t)
        plat = _CLI_PLATFORMS[index % len(_CLI_PLATFORMS)]
        return (
            f"aws-cli/2.15.30 md/awscrt#0.19.19 ua/2.0 {plat} md/pyimpl#CPython cfg/retry-mode#standard "
            f"md/installer#exe md/prompt#off {cmd}"
        )

    def request_id(self, t: Template) -> str:
        """Make a request id in the service's style."""
        if t.service == "s3":
            return token(self.rng, UPPER_DIGITS, 16)
        return uuid4(self.rng)


def _error(env: Env, t: Template, actor: Actor, arn: str) -> tuple[str, str] | None:
    rng = env.rng
    roll = rng.random()
    for code, message, p in t.errors:
        if roll < p:
            return code, message.replace("{account}", env.acct.id)
        roll -= p
    if actor.kind not in _HUMAN_KINDS or t.event_type != "AwsApiCall":
        return None
    svc = t.service
    if roll < 0.008:
        if svc == "ec2":
            msg = (
                "You are not authorized to perform this operation. User: "
                f"{arn} is not authorized to perform: ec2:{t.action} "
                f"because no identity-based policy allows the ec2:{t.action} action"
            )
            return "Client.UnauthorizedOperation", msg
        if svc == "s3":
            return "AccessDenied", "Access Denied"
        code = "AccessDenied" if svc in _DENIED_PLAIN else "AccessDeniedException"
        msg = (
            f"User: {arn} is not authorized to perform: {svc}:{t.action} "
            f"because no identity-based policy allows the {svc}:{t.action} action"
        )
        return code, msg
    if roll < 0.014:
        if svc == "ec2":
            return "Client.RequestLimitExceeded", "Request limit exceeded."
        if svc == "s3":
            return "SlowDown", "Please reduce your request rate."
        return "ThrottlingException", "Rate exceeded"
    return None


def assemble(env: Env, t: Template, actor: Actor, ts: int) -> dict[str, Any]:
    """Build one complete CloudTrail record for template ``t`` called by ``actor`` at ``ts``."""
    rng = env.rng
    signin = t.source == SIGNIN
    console = actor.kind == "root" or (actor.kind in ("user", "sso") and rng.random() < 0.3)
    env.actor = actor
    env.ts = ts
    env.rid = rid = env.request_id(t)
    call = t.build(env)
    ident = env.identity(actor, ts, console, signin)
    if call.via:
        ident = {**ident, "invokedBy": call.via}
        ip = ua = call.via
    elif signin:
        ip = actor.ips[int(rng.random() * len(actor.ips))]
        ua = BROWSERS[actor.index % len(BROWSERS)]
    else:
        ip, ua = env.client(t, actor, console)
    region = env.region
    rec: dict[str, Any] = {
        "eventVersion": t.version,
        "userIdentity": ident,
        "eventTime": env.prefix + _clock(ts),
        "eventSource": t.source,
        "eventName": t.name,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": ua,
    }
    response = call.response
    err = call.error  # a builder's own error keeps its response (ConsoleLogin "Failure")
    if err is None:
        err = _error(env, t, actor, ident.get("arn", ""))
        if err is not None:
            response = None
    if err is not None:
        if err[0]:
            rec["errorCode"] = err[0]
        rec["errorMessage"] = err[1]
    rec["requestParameters"] = call.request
    rec["responseElements"] = response
    if call.extra is not None:
        rec["additionalEventData"] = call.extra
    if not signin and t.event_type == "AwsApiCall":
        rec["requestID"] = rid
    rec["eventID"] = uuid4(rng)
    rec["readOnly"] = t.read_only
    if call.resources is not None:
        rec["resources"] = call.resources
    rec["eventType"] = t.event_type
    rec["managementEvent"] = not t.data
    rec["recipientAccountId"] = env.acct.id
    if call.service_details is not None:
        rec["serviceEventDetails"] = call.service_details
    rec["eventCategory"] = "Data" if t.data else "Management"
    if (
        not call.via
        and actor.kind not in ("service", "slr", "svcevent")
        and t.event_type != "AwsServiceEvent"
    ):
        version, cipher = _TLS[int(rng.random() * len(_TLS))]
        host = call.host or _host(t.service, region)
        rec["tlsDetails"] = {"tlsVersion": version, "cipherSuite": cipher, "clientProvidedHostHeader": host}
        if console and not signin:
            rec["sessionCredentialFromConsole"] = "true"
    return rec


def _host(service: str, region: str) -> str:
    if service == "iam":
        return "iam.amazonaws.com"
    if service == "sso":
        return f"portal.sso.{region}.amazonaws.com"
    return f"{service}.{region}.amazonaws.com"


def _clock(ts: int) -> str:
    h, rem = divmod(ts, 3600)
    m, s = divmod(rem, 60)
    return f"T{h:02d}:{m:02d}:{s:02d}Z"
