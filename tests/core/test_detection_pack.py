"""The shipped rule pack: metadata, hits on real attack records, silence on everything else.

Evidence, per rule, in order of preference: the real CloudTrail corpus (Stratus Red Team
detonations captured by Invictus IR and Datadog, AWS documentation examples, Elastic's pipeline
test inputs), then the synthetic generator's attack story, then hand-written records shaped like
the AWS documentation's examples where neither has the event. Every hit outside the evidence
table is a false positive; the table printed by ``test_false_positives_per_rule`` is the report.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.detection.loader import pack_sources
from trailrelay.generate import ATTACK_STEPS, generate_trail
from trailrelay.pipeline.deadletter import FolderDeadLetters
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.record import Origin, Record
from trailrelay.sources.files import FileSource
from trailrelay.testing import load_records

ADMIN = "AWS AdministratorAccess Policy Attached"
SELECTORS = "AWS CloudTrail Event Selectors Reduce Coverage"
STOP = "AWS CloudTrail Logging Stopped"
UPDATE = "AWS CloudTrail Trail Coverage Reduced Or Redirected"
DELETE = "AWS CloudTrail Trail Deleted"
CONFIG = "AWS Config Recorder Stopped Or Deleted"
CONSOLE = "AWS Console Login Without MFA"
EKS = "AWS EKS Access Entry Or Access Policy Changed"
EKS_ADMIN = "AWS EKS Cluster Admin Access Policy Associated"
GUARDDUTY = "AWS GuardDuty Detector Deleted Or Disabled"
ACCESS_KEY = "AWS IAM Access Key Created Without MFA"
KMS = "AWS KMS Key Disabled Or Scheduled For Deletion"
ORG = "AWS Account Left The Organization"
SCAN = "AWS Principal Scanning With Many Denied Calls"
ROOT = "AWS Root User Console Login"
ACCOUNT_PAB = "AWS S3 Account Public Access Block Removed Or Relaxed"
BUCKET_PAB = "AWS S3 Bucket Public Access Block Removed Or Relaxed"
SECURITYHUB = "AWS Security Hub Disabled"
FLOW = "AWS VPC Flow Logs Deleted"

DD = "datadog-stratus-red-team"
INV = "invictus-ir-aws_dataset"
DOCS = "aws-docs-examples"
ELASTIC = "elastic-pipeline-tests"

# (rule, dataset, eventName) -> hits: real records of the attack each rule is about.
CORPUS_EVIDENCE: dict[tuple[str, str, str], int] = {
    (ADMIN, DD, "AttachUserPolicy"): 1,  # aws.persistence.iam-create-admin-user
    (ADMIN, DD, "AttachRolePolicy"): 1,  # aws.persistence.iam-create-backdoor-role
    (ADMIN, INV, "AttachUserPolicy"): 1,
    (ADMIN, INV, "AttachRolePolicy"): 1,
    (ADMIN, ELASTIC, "AttachUserPolicy"): 1,
    (SELECTORS, DD, "PutEventSelectors"): 1,  # aws.defense-evasion.cloudtrail-event-selectors
    (SELECTORS, INV, "PutEventSelectors"): 1,  # (its restoring call, with All/true, stays silent)
    (STOP, DD, "StopLogging"): 1,  # aws.defense-evasion.cloudtrail-stop (Invictus' 3 attempts failed)
    (DELETE, DD, "DeleteTrail"): 1,  # aws.defense-evasion.cloudtrail-delete
    (DELETE, INV, "DeleteTrail"): 2,  # Stratus removing its own trails: real deletions, benign here
    (UPDATE, ELASTIC, "UpdateTrail"): 1,  # log file validation switched off
    (CONFIG, DOCS, "StopConfigurationRecorder"): 1,
    (CONSOLE, DD, "ConsoleLogin"): 1,  # aws.initial-access.console-login-without-mfa
    (CONSOLE, INV, "ConsoleLogin"): 1,
    (CONSOLE, ELASTIC, "ConsoleLogin"): 1,
    (ACCESS_KEY, DD, "CreateAccessKey"): 2,  # iam-backdoor-user, iam-create-admin-user
    (ACCESS_KEY, INV, "CreateAccessKey"): 2,
    (KMS, DOCS, "DisableKey"): 1,
    (KMS, ELASTIC, "ScheduleKeyDeletion"): 1,
    (GUARDDUTY, ELASTIC, "DeleteDetector"): 1,
    # credential-access.ec2-get-password-data and discovery.ec2-download-user-data storms:
    # tagged from the 10th denied call of the principal within 5 minutes
    (SCAN, DD, "GetPasswordData"): 21,
    (SCAN, DD, "DescribeInstanceAttribute"): 6,
    (SCAN, INV, "GetPasswordData"): 20,
    (SCAN, INV, "DescribeInstanceAttribute"): 6,
    (FLOW, DD, "DeleteFlowLogs"): 1,  # aws.defense-evasion.vpc-remove-flow-logs
    (FLOW, INV, "DeleteFlowLogs"): 1,
}
GENERATOR_EVIDENCE = {
    "ConsoleLogin": CONSOLE,
    "CreateAccessKey": ACCESS_KEY,
    "StopLogging": STOP,
    "DeleteTrail": DELETE,
    "DeleteFlowLogs": FLOW,
    "UpdateDetector": GUARDDUTY,
    "DeleteBucketPublicAccessBlock": BUCKET_PAB,
}
SYNTHETIC_ONLY = {SECURITYHUB, ACCOUNT_PAB, EKS, EKS_ADMIN, ORG}
"""Rules whose attack is in neither the corpus nor the generator: tested on hand-written records."""

ORIGIN = Origin("file", "test://pack")


@pytest.fixture(scope="module")
def tagger() -> SigmaTagger:
    return SigmaTagger()


def _datasets(corpus: Path) -> dict[str, list[Record]]:
    sets = {p.name: load_records(p) for p in sorted((corpus / "cloudtrail").iterdir()) if p.is_dir()}
    elastic: list[Record] = []
    for f in sorted((corpus / ELASTIC).glob("*.log")):
        for i, line in enumerate(f.read_bytes().splitlines()):
            if line.strip():
                elastic.append(Record.from_bytes(line, Origin("file", str(f)), i))
    sets[ELASTIC] = elastic
    return sets


@pytest.fixture(scope="module")
def corpus_hits(corpus: Path, tagger: SigmaTagger) -> tuple[Counter[tuple[str, str, str]], int]:
    hits: Counter[tuple[str, str, str]] = Counter()
    total = 0
    for name, records in _datasets(corpus).items():
        tagger.reset()  # datasets are years apart; each is its own stream
        for record in records:
            total += 1
            for tag in tagger(record).tags:
                hits[(tag.title, name, str(record.routing.event_name))] += 1
    assert tagger.errors == 0
    return hits, total


def test_pack_rules_have_complete_metadata() -> None:
    titles = set()
    for src in pack_sources():
        for doc in yaml.safe_load_all(src.text):
            where = f"{src.origin}: {doc.get('title')}"
            uuid.UUID(doc["id"])
            assert doc["level"] in {"informational", "low", "medium", "high", "critical"}, where
            assert any(t.startswith("attack.t") and t[8:12].isdigit() for t in doc["tags"]), where
            assert doc["falsepositives"] and all(isinstance(f, str) and f for f in doc["falsepositives"]), (
                where
            )
            assert doc.get("description") and doc.get("author") and doc.get("date"), where
            if "correlation" not in doc:
                assert doc["logsource"] == {"product": "aws", "service": "cloudtrail"}, where
            if "DRL" in str(doc.get("license")):  # adapted from SigmaHQ: credit and link the original
                assert "SigmaHQ" in doc["author"] and doc["related"], where
            titles.add(doc["title"])
    expected = {c[0] for c in CORPUS_EVIDENCE} | set(GENERATOR_EVIDENCE.values()) | SYNTHETIC_ONLY | {ROOT}
    assert titles - {"AWS API Call Denied"} == expected


def test_each_rule_fires_on_the_real_attack_records(corpus_hits: tuple[Counter[Any], int]) -> None:
    hits, _ = corpus_hits
    missing = {k: v for k, v in CORPUS_EVIDENCE.items() if hits[k] != v}
    assert not missing, (
        f"expected hits not seen (want, got): { {k: (v, hits[k]) for k, v in missing.items()} }"
    )


def test_false_positives_per_rule(corpus_hits: tuple[Counter[Any], int], tagger: SigmaTagger) -> None:
    hits, total = corpus_hits
    titles = sorted(info.title for info in tagger.rules if info.kind != "base")
    report = []
    false_positives: dict[str, int] = {}
    for title in titles:
        mine = {k: v for k, v in hits.items() if k[0] == title}
        true = sum(min(v, CORPUS_EVIDENCE.get(k, 0)) for k, v in mine.items())
        false_positives[title] = sum(v - min(v, CORPUS_EVIDENCE.get(k, 0)) for k, v in mine.items())
        report.append(f"{title:<58} true hits {true:>3}   false positives {false_positives[title]}")
    print(f"\nrule pack over {total} real records:\n" + "\n".join(report))
    assert false_positives == dict.fromkeys(titles, 0), "\n".join(report)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Record], dict[str, str]]:
    root = tmp_path_factory.mktemp("trail")
    summary = generate_trail(root, seed=11, accounts=2, regions=("us-east-1",), events_per_hour=40)
    return load_records(root), summary.attack_event_ids


def test_generator_attack_story_fires_and_background_is_silent(
    generated: tuple[list[Record], dict[str, str]],
) -> None:
    records, attack_ids = generated
    tagger = SigmaTagger()
    tags: dict[str, list[str]] = {}
    for record in records:
        titles = [t.title for t in tagger(record).tags]
        if titles:
            tags[str(record.routing.event_id)] = titles
    assert set(attack_ids) == set(ATTACK_STEPS)
    for step, event_id in attack_ids.items():
        assert tags.pop(event_id) == [GENERATOR_EVIDENCE[step]], step
    # what is left: the management account's planned root sign-in (with MFA), and nothing else
    assert list(tags.values()) == [[ROOT]], tags
    assert len(records) > 500


# --- hand-written records for events neither source has -------------------------------------

_IDENTITY = {
    "type": "IAMUser",
    "principalId": "AIDAEXAMPLEUSER00001",
    "arn": "arn:aws:iam::111122223333:user/alice",
    "accountId": "111122223333",
    "accessKeyId": "AKIAEXAMPLEKEY000001",
    "userName": "alice",
}


def ct(source: str, name: str, request: Any = None, **extra: Any) -> dict[str, Any]:
    doc = {
        "eventVersion": "1.09",
        "userIdentity": copy.deepcopy(_IDENTITY),
        "eventTime": "2026-03-02T14:05:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64",
        "requestParameters": request,
        "responseElements": None,
        "requestID": "0d3c6b0e-1111-4c3a-9d51-000000000001",
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }
    doc.update(extra)
    return doc


def _pab(*, relaxed: bool) -> dict[str, Any]:
    return {
        "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
        "RestrictPublicBuckets": True,
        "BlockPublicPolicy": not relaxed,
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
    }


def _login(identity_type: str, result: str, mfa: str) -> dict[str, Any]:
    doc = ct("signin.amazonaws.com", "ConsoleLogin", eventType="AwsConsoleSignIn")
    doc["userIdentity"]["type"] = identity_type
    doc["responseElements"] = {"ConsoleLogin": result}
    doc["additionalEventData"] = {"LoginTo": "https://console.aws.amazon.com/console/home", "MFAUsed": mfa}
    return doc


_EKS_ACCESS = {"name": "prod", "principalArn": "arn:aws:iam::111122223333:role/ci"}
SYNTHETIC: list[tuple[str, dict[str, Any], list[str]]] = [
    ("security hub disabled", ct("securityhub.amazonaws.com", "DisableSecurityHub", {}), [SECURITYHUB]),
    (
        "security hub disable denied",
        ct("securityhub.amazonaws.com", "DisableSecurityHub", {}, errorCode="AccessDeniedException"),
        [],
    ),
    (
        "account PAB deleted",
        ct(
            "s3.amazonaws.com",
            "DeleteAccountPublicAccessBlock",
            {"Host": "111122223333.s3-control.amazonaws.com"},
        ),
        [ACCOUNT_PAB],
    ),
    (
        "account PAB relaxed",
        ct(
            "s3.amazonaws.com",
            "PutAccountPublicAccessBlock",
            {"PublicAccessBlockConfiguration": _pab(relaxed=True)},
        ),
        [ACCOUNT_PAB],
    ),
    (
        "account PAB set fully",
        ct(
            "s3.amazonaws.com",
            "PutAccountPublicAccessBlock",
            {"PublicAccessBlockConfiguration": _pab(relaxed=False)},
        ),
        [],
    ),
    (
        "account PAB via S3 Control name",
        ct("s3control.amazonaws.com", "DeletePublicAccessBlock", {"accountId": "111122223333"}),
        [ACCOUNT_PAB],
    ),
    (
        "bucket PAB relaxed",
        ct(
            "s3.amazonaws.com",
            "PutBucketPublicAccessBlock",
            {
                "publicAccessBlock": [""],
                "bucketName": "b",
                "PublicAccessBlockConfiguration": _pab(relaxed=True),
            },
        ),
        [BUCKET_PAB],
    ),
    (
        "bucket PAB set fully",
        ct(
            "s3.amazonaws.com",
            "PutBucketPublicAccessBlock",
            {"bucketName": "b", "PublicAccessBlockConfiguration": _pab(relaxed=False)},
        ),
        [],
    ),
    (
        "EKS access entry",
        ct("eks.amazonaws.com", "CreateAccessEntry", dict(_EKS_ACCESS, type="STANDARD")),
        [EKS],
    ),
    (
        "EKS cluster admin granted",
        ct(
            "eks.amazonaws.com",
            "AssociateAccessPolicy",
            dict(
                _EKS_ACCESS,
                policyArn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                accessScope={"type": "cluster"},
            ),
        ),
        [EKS, EKS_ADMIN],
    ),
    (
        "EKS view policy",
        ct(
            "eks.amazonaws.com",
            "AssociateAccessPolicy",
            dict(_EKS_ACCESS, policyArn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"),
        ),
        [EKS],
    ),
    ("EKS describe", ct("eks.amazonaws.com", "DescribeAccessEntry", _EKS_ACCESS, readOnly=True), []),
    ("left organization", ct("organizations.amazonaws.com", "LeaveOrganization"), [ORG]),
    (
        "leave organization denied",
        ct("organizations.amazonaws.com", "LeaveOrganization", errorCode="AccessDenied"),
        [],
    ),
    (
        "trail made single-region",
        ct("cloudtrail.amazonaws.com", "UpdateTrail", {"name": "org", "isMultiRegionTrail": False}),
        [UPDATE],
    ),
    (
        "trail widened",
        ct("cloudtrail.amazonaws.com", "UpdateTrail", {"name": "org", "includeGlobalServiceEvents": True}),
        [],
    ),
    (
        "advanced selectors restricted to reads",
        ct(
            "cloudtrail.amazonaws.com",
            "PutEventSelectors",
            {
                "trailName": "org",
                "advancedEventSelectors": [
                    {
                        "name": "mgmt reads",
                        "fieldSelectors": [
                            {"field": "eventCategory", "equals": ["Management"]},
                            {"field": "readOnly", "equals": ["true"]},
                        ],
                    }
                ],
            },
        ),
        [SELECTORS],
    ),
    (
        "advanced selectors for S3 data events only (management events no longer logged)",
        ct(
            "cloudtrail.amazonaws.com",
            "PutEventSelectors",
            {
                "trailName": "org",
                "advancedEventSelectors": [
                    {
                        "name": "S3 objects",
                        "fieldSelectors": [
                            {"field": "eventCategory", "equals": ["Data"]},
                            {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                        ],
                    }
                ],
            },
        ),
        [SELECTORS],
    ),
    (
        "advanced selectors as the console writes them: management events and S3 data events",
        ct(
            "cloudtrail.amazonaws.com",
            "PutEventSelectors",
            {
                "trailName": "org",
                "advancedEventSelectors": [
                    {
                        "name": "Management events selector",
                        "fieldSelectors": [{"field": "eventCategory", "equals": ["Management"]}],
                    },
                    {
                        "name": "S3 objects",
                        "fieldSelectors": [
                            {"field": "eventCategory", "equals": ["Data"]},
                            {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                        ],
                    },
                ],
            },
        ),
        [],
    ),
    (
        "management events of a service excluded",
        ct(
            "cloudtrail.amazonaws.com",
            "PutEventSelectors",
            {
                "trailName": "org",
                "eventSelectors": [
                    {
                        "readWriteType": "All",
                        "includeManagementEvents": True,
                        "excludeManagementEventSources": ["kms.amazonaws.com"],
                    }
                ],
            },
        ),
        [SELECTORS],
    ),
    (
        "GuardDuty disabled",
        ct("guardduty.amazonaws.com", "UpdateDetector", {"detectorId": "d1", "enable": False}),
        [GUARDDUTY],
    ),
    (
        "GuardDuty settings",
        ct("guardduty.amazonaws.com", "UpdateDetector", {"detectorId": "d1", "enable": True}),
        [],
    ),
    ("Config recorder deleted", ct("config.amazonaws.com", "DeleteConfigurationRecorder", {}), [CONFIG]),
    ("root login", _login("Root", "Success", "Yes"), [ROOT]),
    ("root login without MFA", _login("Root", "Success", "No"), [CONSOLE, ROOT]),
    ("root login failed", _login("Root", "Failure", "No"), []),
    ("SSO login (MFA at the IdP)", _login("AssumedRole", "Success", "No"), []),
    ("user login with MFA", _login("IAMUser", "Success", "Yes"), []),
    (
        "access key with MFA",
        ct(
            "iam.amazonaws.com",
            "CreateAccessKey",
            {"userName": "bob"},
            userIdentity=dict(_IDENTITY, sessionContext={"attributes": {"mfaAuthenticated": "true"}}),
        ),
        [],
    ),
    (
        "read-only policy attached",
        ct(
            "iam.amazonaws.com",
            "AttachUserPolicy",
            {"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
        ),
        [],
    ),
    (
        "admin attached to a group",
        ct(
            "iam.amazonaws.com",
            "AttachGroupPolicy",
            {"groupName": "ops", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        ),
        [ADMIN],
    ),
]


@pytest.mark.parametrize(("case", "doc", "expected"), SYNTHETIC, ids=[c[0] for c in SYNTHETIC])
def test_hand_written_records(
    tagger: SigmaTagger, case: str, doc: dict[str, Any], expected: list[str]
) -> None:
    tagger.reset()
    record = tagger(Record.from_document(doc, ORIGIN))
    assert sorted(t.title for t in record.tags) == sorted(expected), case


def test_every_rule_has_evidence() -> None:
    evidenced = (
        {c[0] for c in CORPUS_EVIDENCE}
        | set(GENERATOR_EVIDENCE.values())
        | {title for _, _, titles in SYNTHETIC for title in titles}
    )
    loaded = {info.title for info in SigmaTagger().rules if info.kind != "base"}
    assert loaded <= evidenced, loaded - evidenced
    assert {title for _, _, titles in SYNTHETIC for title in titles} >= SYNTHETIC_ONLY


def test_tagger_as_a_pipeline_transform(tmp_path: Path, scripted: Any) -> None:
    """In a real pipeline run the tags reach the metrics' high-risk list; nothing is lost."""
    summary = generate_trail(
        tmp_path / "trail", seed=3, accounts=1, regions=("us-east-1",), events_per_hour=5
    )
    sink = scripted()
    metrics, stop, dead = Metrics(), threading.Event(), FolderDeadLetters(tmp_path / "dead")
    pipe = Pipeline(FileSource(tmp_path / "trail"), dead_letters=dead, metrics=metrics, stop=stop)
    pipe.transforms = [SigmaTagger()]
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal, backoff_base=0.001
    )
    pipe.run()
    flagged = {entry["eventID"]: entry["titles"] for entry in metrics.high_risk}
    assert set(summary.attack_event_ids.values()) <= set(flagged)
    assert len(sink.stored) == summary.records


def test_merged_value_lists_give_the_same_verdicts_on_the_corpus(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped pack with value lists merged into one test (the default) and leaf by leaf:
    the same tags on every real record (case-mangled copies too), so the merge is only speed."""
    from trailrelay.detection import compile as compiled

    records = [r for rs in _datasets(corpus).values() for r in rs]
    mangled = [
        Record.from_bytes(r.raw.replace(b"Access", b"ACCESS").replace(b"amazonaws", b"AmazonAWS"), r.origin)
        for r in records
    ]
    verdicts: dict[bool, list[list[str]]] = {}
    for merge in (True, False):
        monkeypatch.setattr(compiled, "MERGE_LISTS", merge)
        tagger = SigmaTagger()
        verdicts[merge] = [
            sorted(t.rule_id for t in tagger(Record(r.raw, r.routing, r.origin, r.index)).tags)
            for r in [*records, *mangled]
        ]
    assert sum(map(bool, verdicts[True])) > 100  # the comparison covers real matches
    assert verdicts[True] == verdicts[False]
