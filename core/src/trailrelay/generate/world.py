"""The synthetic organization: accounts, principals and resources, built from a seeded RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from trailrelay.generate.ids import ALNUM, B32, hex_token, token, uuid4

__all__ = ["Account", "Actor", "Bucket", "Org", "RegionRes", "build_org"]

ALIASES = ("management", "prod", "dev", "security", "staging", "data", "shared-services", "sandbox")
_PEOPLE = (
    "alice.martin", "bruno.silva", "chen.wei", "dana.kowalski", "emeka.obi", "farah.haddad",
    "gustav.lind", "hana.sato", "ivan.petrov", "julia.rossi", "kofi.mensah", "lena.novak",
    "mateo.garcia", "nadia.rahman", "oscar.berg", "priya.nair",
)  # fmt: skip
_BOTS = ("terraform-ci", "backup-agent", "monitoring-integration", "legacy-etl")
_PERMISSION_SETS = ("AdministratorAccess", "PowerUserAccess", "ReadOnlyAccess", "SecurityAudit")
_INSTANCE_ROLES = ("app-server-role", "eks-node-group-role", "batch-worker-role")
_FUNCTIONS = (
    "orders-api-handler", "thumbnail-resizer", "nightly-report", "s3-event-router",
    "slack-notifier", "cost-exporter", "session-cleanup",
)  # fmt: skip
_TABLES = ("orders", "sessions", "inventory", "audit-events", "feature-flags")
_BUCKET_KINDS = ("app-assets", "data-lake", "terraform-state", "backups", "reports")
SERVICE_LINKED = {
    "config.amazonaws.com": "AWSServiceRoleForConfig",
    "guardduty.amazonaws.com": "AWSServiceRoleForAmazonGuardDuty",
    "inspector2.amazonaws.com": "AWSServiceRoleForAmazonInspector2",
    "securityhub.amazonaws.com": "AWSServiceRoleForSecurityHub",
    "access-analyzer.amazonaws.com": "AWSServiceRoleForAccessAnalyzer",
}
SERVICES = (
    "lambda.amazonaws.com",
    "ec2.amazonaws.com",
    "cloudtrail.amazonaws.com",
    "ecs-tasks.amazonaws.com",
)
SERVICE_EVENTS = ("kms.amazonaws.com", "secretsmanager.amazonaws.com")

# Documentation address ranges (RFC 5737 / RFC 3849). 203.0.113.0/24 is kept for the attacker.
OFFICE_IPS = (*(f"198.51.100.{n}" for n in range(10, 40)), "2001:db8:4f1a::17", "2001:db8:4f1a::2c")
CI_IPS = tuple(f"192.0.2.{n}" for n in range(20, 80))
NAT_IPS = tuple(f"198.51.100.{n}" for n in range(200, 216))
LAMBDA_IPS = tuple(f"192.0.2.{n}" for n in range(180, 240))


@dataclass(slots=True)
class Actor:
    """A principal that makes calls: its kind, base ``userIdentity`` and habits."""

    index: int
    kind: str
    """user, bot, sso, ci, workload, lambda, slr, service, svcevent, root or idc."""
    name: str
    identity: dict[str, Any]
    ips: tuple[str, ...] = ()
    region: str | None = None
    """Set for principals bound to one region (instances, functions)."""
    service: str | None = None
    """The AWS service behind ``slr``/``service`` actors."""
    role_arn: str = ""
    weight: float = 1.0
    mfa: bool = False
    session_minute: int = 0


@dataclass(slots=True)
class Bucket:
    """An S3 bucket with its home region and the shape of keys it holds."""

    name: str
    region: str
    kind: str


@dataclass(slots=True)
class RegionRes:
    """Resources of one account in one region."""

    instances: list[str]
    amis: list[str]
    vpcs: list[str]
    subnets: list[str]
    security_groups: list[str]
    volumes: list[str]
    snapshots: list[str]
    flow_logs: list[str]
    kms_keys: list[str]
    detector: str
    functions: list[str]
    tables: list[str]
    secrets: list[str]
    parameters: list[str]
    load_balancers: list[str]


@dataclass(slots=True)
class Account:
    """One member account of the organization."""

    id: str
    alias: str
    key_infix: str
    """Eight characters shared by the account's IAM ids, like real AIDA/AROA/AKIA ids."""
    actors: list[Actor] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)
    res: dict[str, RegionRes] = field(default_factory=dict)
    roles: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Role name -> (role ARN, AROA id)."""
    local_trail: str = ""
    admin: Actor | None = None

    def iam_id(self, rng: random.Random, prefix: str) -> str:
        """Make an IAM unique id (``AIDA``/``AROA``/``AKIA``/``ASIA``...) carrying the account infix."""
        n = 9 if prefix in ("AIDA", "AROA") else 8
        return prefix + self.key_infix + token(rng, B32, n)


@dataclass(slots=True)
class Org:
    """The organization: id, accounts (the first is the management account) and trail."""

    id: str
    accounts: list[Account]
    regions: tuple[str, ...]
    trail_name: str
    bucket: str
    identity_store: str

    @property
    def global_region(self) -> str:
        """Where global services (IAM, sign-in, Organizations) log: us-east-1 when traced."""
        return "us-east-1" if "us-east-1" in self.regions else self.regions[0]

    @property
    def home_region(self) -> str:
        """The organization trail's home region."""
        return self.regions[0]


def build_org(rng: random.Random, n_accounts: int, regions: tuple[str, ...], attack_index: int) -> Org:
    """Build the whole organization deterministically from ``rng``."""
    org_id = "o-" + token(rng, "abcdefghijklmnopqrstuvwxyz0123456789", 10)
    ids: list[str] = []
    while len(ids) < n_accounts:
        acct = str(rng.randrange(10**11, 10**12))
        if acct not in ids:
            ids.append(acct)
    accounts = []
    for i, acct_id in enumerate(ids):
        alias = ALIASES[i] if i < len(ALIASES) else f"workload-{i}"
        accounts.append(_build_account(rng, acct_id, alias, regions, admin=i == attack_index))
    mgmt = accounts[0]
    _add_management_actors(rng, mgmt, regions)
    return Org(
        id=org_id,
        accounts=accounts,
        regions=regions,
        trail_name="organization-trail",
        bucket=f"aws-cloudtrail-logs-{mgmt.id}-{hex_token(rng, 8)}",
        identity_store=f"d-{token(rng, '0123456789', 10)}",
    )


def _build_account(
    rng: random.Random, acct: str, alias: str, regions: tuple[str, ...], *, admin: bool
) -> Account:
    a = Account(id=acct, alias=alias, key_infix=token(rng, B32, 8))
    a.local_trail = f"{alias}-account-trail"
    a.buckets = [
        Bucket(f"{alias}-{kind}-{acct}", regions[j % len(regions)], kind)
        for j, kind in enumerate(rng.sample(_BUCKET_KINDS, 3))
    ]
    for region in regions:
        a.res[region] = _region_resources(rng, acct, region)
    people = rng.sample(_PEOPLE, 3)
    for person in people:
        _add_user(rng, a, person, "user", OFFICE_IPS, mfa=True)
    if admin:
        a.admin = _add_user(
            rng, a, f"admin.{rng.choice(_PEOPLE).split('.')[0]}", "user", OFFICE_IPS, mfa=True
        )
    _add_user(rng, a, rng.choice(_BOTS), "bot", CI_IPS[:5], mfa=False)
    for pset in rng.sample(_PERMISSION_SETS, 3):
        role = f"AWSReservedSSO_{pset}_{hex_token(rng, 16)}"
        path = "aws-reserved/sso.amazonaws.com/"
        for person in rng.sample(_PEOPLE, 2):
            _add_role_actor(rng, a, role, f"{person}@example.com", kind="sso", ips=OFFICE_IPS, path=path)
    _add_role_actor(rng, a, "github-actions-deploy", "GitHubActions", kind="ci", ips=CI_IPS)
    for region in regions:
        res = a.res[region]
        for j, instance in enumerate(res.instances[:4]):
            role = _INSTANCE_ROLES[j % len(_INSTANCE_ROLES)]
            act = _add_role_actor(rng, a, role, instance, kind="workload", ips=NAT_IPS, region=region)
            act.identity["sessionContext"]["ec2RoleDelivery"] = "2.0"
        for fn in res.functions:
            role = f"{fn}-role-{token(rng, 'abcdefghijklmnopqrstuvwxyz0123456789', 8)}"
            _add_role_actor(rng, a, role, fn, kind="lambda", ips=LAMBDA_IPS, region=region)
    for role in ("OrganizationAccountAccessRole", "ReadOnlyAuditRole", "terraform-execution"):
        a.roles[role] = (f"arn:aws:iam::{acct}:role/{role}", a.iam_id(rng, "AROA"))
    for service, role in SERVICE_LINKED.items():
        path = f"aws-service-role/{service}/"
        session = _slr_session(rng, service)
        act = _add_role_actor(rng, a, role, session, kind="slr", ips=(service,), path=path)
        act.service = service
        act.identity["invokedBy"] = service
    for service in SERVICES:
        ident = {"type": "AWSService", "invokedBy": service}
        a.actors.append(Actor(len(a.actors), "service", service, ident, (service,), service=service))
    for service in SERVICE_EVENTS:  # AwsServiceEvent records carry no userIdentity.type
        ident = {"accountId": acct, "invokedBy": service}
        a.actors.append(Actor(len(a.actors), "svcevent", service, ident, (service,), service=service))
    return a


def _add_management_actors(rng: random.Random, a: Account, regions: tuple[str, ...]) -> None:
    root = {
        "type": "Root",
        "principalId": a.id,
        "arn": f"arn:aws:iam::{a.id}:root",
        "accountId": a.id,
    }
    a.actors.append(Actor(len(a.actors), "root", "root", root, OFFICE_IPS[:3], weight=0.03, mfa=True))
    store = f"arn:aws:identitystore::{a.id}:identitystore/d-{token(rng, '0123456789', 10)}"
    for person in rng.sample(_PEOPLE, 3):
        ident = {
            "type": "IdentityCenterUser",
            "accountId": a.id,
            "onBehalfOf": {"userId": uuid4(rng), "identityStoreArn": store},
            "credentialId": token(rng, ALNUM + "-_", 64),
        }
        a.actors.append(Actor(len(a.actors), "idc", person, ident, OFFICE_IPS, region=regions[0]))


def _add_user(
    rng: random.Random, a: Account, name: str, kind: str, ips: tuple[str, ...], *, mfa: bool
) -> Actor:
    ident = {
        "type": "IAMUser",
        "principalId": a.iam_id(rng, "AIDA"),
        "arn": f"arn:aws:iam::{a.id}:user/{name}",
        "accountId": a.id,
        "accessKeyId": a.iam_id(rng, "AKIA"),
        "userName": name,
    }
    act = Actor(len(a.actors), kind, name, ident, ips, mfa=mfa, session_minute=rng.randrange(60))
    a.actors.append(act)
    return act


def _add_role_actor(
    rng: random.Random,
    a: Account,
    role: str,
    session: str,
    *,
    kind: str,
    ips: tuple[str, ...],
    path: str = "",
    region: str | None = None,
) -> Actor:
    if role not in a.roles:
        a.roles[role] = (f"arn:aws:iam::{a.id}:role/{path}{role}", a.iam_id(rng, "AROA"))
    role_arn, aroa = a.roles[role]
    ident: dict[str, Any] = {
        "type": "AssumedRole",
        "principalId": f"{aroa}:{session}",
        "arn": f"arn:aws:sts::{a.id}:assumed-role/{role}/{session}",
        "accountId": a.id,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": aroa,
                "arn": role_arn,
                "accountId": a.id,
                "userName": role,
            },
            "webIdFederationData": {},
        },
    }
    act = Actor(len(a.actors), kind, session, ident, ips, region=region, role_arn=role_arn)
    act.session_minute = rng.randrange(60)
    a.actors.append(act)
    return act


def _slr_session(rng: random.Random, service: str) -> str:
    if service == "config.amazonaws.com":
        return "AWSConfig-Describe"
    if service == "inspector2.amazonaws.com":
        return f"MandoService{rng.randrange(10**17, 10**18)}"
    if service == "guardduty.amazonaws.com":
        return "GuardDutyServiceSession"
    if service == "securityhub.amazonaws.com":
        return "securityhub"
    return "access-analyzer"


def _region_resources(rng: random.Random, acct: str, region: str) -> RegionRes:
    def ids(prefix: str, n: int, width: int = 17) -> list[str]:
        return [f"{prefix}-{hex_token(rng, width)}" for _ in range(n)]

    return RegionRes(
        instances=ids("i", 8),
        amis=ids("ami", 3),
        vpcs=ids("vpc", 2),
        subnets=ids("subnet", 4),
        security_groups=ids("sg", 5),
        volumes=ids("vol", 8),
        snapshots=ids("snap", 4),
        flow_logs=ids("fl", 2),
        kms_keys=[f"arn:aws:kms:{region}:{acct}:key/{uuid4(rng)}" for _ in range(3)],
        detector=hex_token(rng, 32),
        functions=rng.sample(_FUNCTIONS, 3),
        tables=rng.sample(_TABLES, 3),
        secrets=[
            f"arn:aws:secretsmanager:{region}:{acct}:secret:{name}-{token(rng, ALNUM, 6)}"
            for name in ("prod/db/password", "api/stripe-key", "ci/github-token")
        ],
        parameters=["/app/config/feature-flags", "/app/db/host", "/app/db/password", "/ci/deploy/role"],
        load_balancers=[
            f"arn:aws:elasticloadbalancing:{region}:{acct}:loadbalancer/app/{n}/{hex_token(rng, 16)}"
            for n in ("public-alb", "internal-api")
        ],
    )
