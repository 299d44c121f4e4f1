"""The shared contract suite every sink must pass, and sample records to feed it.

A connector's tests subclass :class:`SinkContract` and provide a ``harness`` fixture: an
object that builds the sink against a local stand-in of the SIEM and can ask that stand-in
what it stored and make it fail. The suite then checks the behaviour the pipeline relies on::

    class TestSplunkContract(SinkContract):
        @pytest.fixture
        def harness(self, hec_standin):
            return SplunkHarness(hec_standin)

A connector's tests run its own commands without the ``trailrelay`` CLI in front of them
after :func:`provide_core_services` (call it once, in ``conftest.py``).
:mod:`trailrelay.testing.trail` builds signed CloudTrail trails (log files and digest chains)
for integrity tests and benchmarks.

Test helpers are not runtime code: nothing outside this package imports it. It needs pytest
(the suite's methods are ordinary pytest tests), which the ``testing`` extra brings:
``pip install "trailrelay[testing]"``.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

try:
    import pytest
except ModuleNotFoundError as exc:  # a plain install has no pytest: say which extra brings it
    raise ModuleNotFoundError(
        "trailrelay.testing is the test kit for connectors and needs pytest: "
        'pip install "trailrelay[testing]"',
        name=exc.name,
    ) from exc

from trailrelay.contract import (
    Batch,
    BatchLimits,
    CheckResult,
    ConfigError,
    Encoder,
    FatalSinkError,
    Origin,
    Outcome,
    Record,
    RetryableError,
    Sink,
    SinkError,
    Status,
)
from trailrelay.services import provide_core_services

__all__ = [
    "CORPUS_ENV",
    "REQUIRE_CORPUS_ENV",
    "SAMPLE_DIGEST",
    "SAMPLE_EVENTS",
    "SAMPLE_INTEGRITY_EVENT",
    "SinkContract",
    "SinkHarness",
    "assert_refuses_credentials_in_url",
    "corpus_dir",
    "load_records",
    "provide_core_services",
    "require_corpus",
    "sample_records",
    "settled",
]

_IAM_USER = {
    "type": "IAMUser",
    "principalId": "AIDAEXAMPLEUSER00001",
    "arn": "arn:aws:iam::111122223333:user/alice",
    "accountId": "111122223333",
    "accessKeyId": "AKIAEXAMPLEKEY000001",
    "userName": "alice",
}

SAMPLE_EVENTS: list[dict[str, Any]] = [
    {
        "eventVersion": "1.09",
        "userIdentity": _IAM_USER,
        "eventTime": "2026-03-02T10:15:02Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64",
        "requestParameters": {"name": "arn:aws:cloudtrail:eu-west-1:111122223333:trail/org"},
        "responseElements": None,
        "requestID": "0d3c6b0e-1111-4c3a-9d51-000000000001",
        "eventID": "6f1d1c7e-0001-4b8e-8f3a-000000000001",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": "cloudtrail.eu-west-1.amazonaws.com",
        },
    },
    {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEROLE00001:deploy",
            "arn": "arn:aws:sts::111122223333:assumed-role/Deployer/deploy",
            "accountId": "111122223333",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEROLE00001",
                    "arn": "arn:aws:iam::111122223333:role/Deployer",
                    "accountId": "111122223333",
                    "userName": "Deployer",
                },
                "attributes": {"creationDate": "2026-03-02T09:00:00Z", "mfaAuthenticated": "false"},
            },
        },
        "eventTime": "2026-03-02T10:16:40Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "DescribeInstances",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.20",
        "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux lang/python#3.11",
        "errorCode": "Client.UnauthorizedOperation",
        "errorMessage": "You are not authorized to perform this operation. Ünïcödé ✓",
        "requestParameters": {"maxResults": 1000, "instancesSet": {}},
        "responseElements": None,
        "requestID": "0d3c6b0e-1111-4c3a-9d51-000000000002",
        "eventID": "6f1d1c7e-0002-4b8e-8f3a-000000000002",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    },
    {
        "eventVersion": "1.08",
        "userIdentity": {"accountId": "111122223333", "invokedBy": "secretsmanager.amazonaws.com"},
        "eventTime": "2026-03-02T10:17:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "RotationSucceeded",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "secretsmanager.amazonaws.com",
        "userAgent": "secretsmanager.amazonaws.com",
        "requestParameters": None,
        "responseElements": None,
        "eventID": "6f1d1c7e-0003-4b8e-8f3a-000000000003",
        "readOnly": False,
        "eventType": "AwsServiceEvent",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "serviceEventDetails": {"versionId": "v2"},
        "eventCategory": "Management",
    },
    {
        "eventVersion": "1.08",
        "userIdentity": _IAM_USER,
        "eventTime": "2026-03-02T10:18:00Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.44",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {
            "MFAUsed": "No",
            "MobileVersion": "No",
            "LoginTo": "https://console.aws.amazon.com",
        },
        "eventID": "6f1d1c7e-0004-4b8e-8f3a-000000000004",
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    },
    {
        "eventVersion": "1.09",
        "userIdentity": _IAM_USER,
        "eventTime": "2026-03-02T10:19:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "[aws-cli/2.15.0]",
        "requestParameters": {
            "bucketName": "finance-reports",
            "key": "2026/q1.csv",
            "Host": "finance-reports.s3.amazonaws.com",
        },
        "responseElements": None,
        "additionalEventData": {"bytesTransferredOut": 52311, "x-amz-id-2": "EXAMPLE="},
        "resources": [
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::finance-reports/2026/q1.csv"},
            {"accountId": "111122223333", "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::finance-reports"},
        ],
        "eventID": "6f1d1c7e-0005-4b8e-8f3a-000000000005",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": False,
        "recipientAccountId": "111122223333",
        "eventCategory": "Data",
    },
]


SAMPLE_DIGEST = (
    "s3://trail-bucket/AWSLogs/o-abcdef1234/111122223333/CloudTrail-Digest/us-east-1/2026/03/01/d.json.gz"
)
SAMPLE_INTEGRITY_EVENT: dict[str, Any] = {
    "type": "trailrelay:integrity",
    "verdict": "invalid",
    "chain": "linked",
    "digest": SAMPLE_DIGEST,
    "account": "111122223333",
    "region": "us-east-1",
    "trail": "org-trail",
    "home_region": "us-east-1",
    "organization": "o-abcdef1234",
    "backfill": False,
    "digest_start": "2026-03-01T21:01:31Z",
    "digest_end": "2026-03-01T22:01:31Z",
    "signature": "valid",
    "counts": {"log_files": 2, "valid": 1, "modified": 1, "missing": 0, "unreadable": 0, "not_forwarded": 0},
    "problems": [
        {"kind": "log-modified", "severity": "failure", "location": "s3://trail-bucket/l", "detail": "x"}
    ],
    "source": "s3://trail-bucket/",
    "verified_at": "2026-03-02T10:00:05Z",
    "window_start": "2026-03-02T07:00:00Z",
    "window_end": "2026-03-02T08:00:00Z",
}
"""An integrity event as the forwarder emits it for a digest whose log file was modified."""


def sample_records(count: int = len(SAMPLE_EVENTS), *, pretty_every: int = 4) -> list[Record]:
    """``count`` records cycling through SAMPLE_EVENTS with unique eventIDs.

    Every ``pretty_every``-th record keeps pretty-printed (multi-line) source bytes, the way
    some sources hold them, so sinks are exercised on both compact and indented input.
    """
    origin = Origin("file", "trailrelay-testing://sample")
    out: list[Record] = []
    for i in range(count):
        doc = copy.deepcopy(SAMPLE_EVENTS[i % len(SAMPLE_EVENTS)])
        doc["eventID"] = f"{doc['eventID'][:-12]}{i:012d}"
        option = orjson.OPT_INDENT_2 if pretty_every and i % pretty_every == pretty_every - 1 else 0
        out.append(Record.from_bytes(orjson.dumps(doc, option=option), origin, i))
    return out


CORPUS_ENV = "TRAILRELAY_CORPUS"
"""Where the shared real-CloudTrail corpus is (its root, holding ``cloudtrail/``)."""
REQUIRE_CORPUS_ENV = "TRAILRELAY_REQUIRE_CORPUS"
"""Set to ``1`` (CI does) and a test that needs the corpus fails instead of skipping without it."""


def corpus_dir() -> Path | None:
    """The shared real-CloudTrail corpus root, if present: the one finder every test uses.

    ``$TRAILRELAY_CORPUS`` when set (its root, or its ``cloudtrail`` folder), and then nothing
    else: a wrong path is not papered over by another copy. Otherwise ``shared/corpus`` beside
    the repository (or the working directory's parent).
    """
    env = os.environ.get(CORPUS_ENV)
    if env:
        given = Path(env).expanduser()
        for c in (given, given.parent):
            if (c / "cloudtrail").is_dir():
                return c.resolve()
        return None
    here = Path(__file__).resolve()
    candidates = [parent / "shared" / "corpus" for parent in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "corpus")
    for c in candidates:
        if (c / "cloudtrail").is_dir():
            return c
    return None


def require_corpus(part: str = "") -> Path:
    """The corpus (or its ``part`` folder) for a test: skip without it, or fail when it is required.

    With ``TRAILRELAY_REQUIRE_CORPUS=1`` a missing corpus is a failure, so a CI run that lost
    the corpus cannot pass by skipping every test that reads real CloudTrail.
    """
    found = corpus_dir()
    path = found / part if found is not None and part else found
    if path is not None and path.is_dir():
        return path
    where = os.environ.get(CORPUS_ENV) or "../shared/corpus"
    what = f"{part} in the shared corpus" if part else "the shared real-CloudTrail corpus"
    message = f"{what} not found (${CORPUS_ENV}={where}); set {CORPUS_ENV} to the corpus root"
    if os.environ.get(REQUIRE_CORPUS_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_CORPUS_ENV}=1: corpus tests must not skip)", pytrace=False)
    pytest.skip(message)


def load_records(path: Path | str) -> list[Record]:
    """Every record in a CloudTrail file or folder, read the way the files source reads them.

    Unreadable items are skipped here (tests that care about them use the pipeline).
    """
    from trailrelay.sources.decompress import decompress  # noqa: PLC0415 - keep the contract import light
    from trailrelay.sources.files import list_files  # noqa: PLC0415
    from trailrelay.sources.parse import NotALogFile, iter_records  # noqa: PLC0415

    out: list[Record] = []
    files, _ = list_files(Path(path))
    for f in files:
        try:
            items = list(iter_records(decompress(f.read_bytes()), Origin("file", str(f))))
        except (NotALogFile, Exception):  # noqa: S112 - not a log file: nothing to load
            continue
        out.extend(item for item in items if isinstance(item, Record))
    return out


class SinkHarness(Protocol):
    """What a connector's tests provide: its sink wired to a local stand-in of the SIEM."""

    secrets: Sequence[str]
    """Secret values in the sink's config (token, key): they must never surface in text."""

    def make_sink(self) -> Sink:
        """A new, unopened sink configured for the stand-in."""
        ...

    def unreachable_sink(self) -> Sink:
        """A new, unopened sink pointed at an address nothing listens on."""
        ...

    def encoder(self) -> Encoder:
        """The sink's offline encoder with the same config."""
        ...

    def stored_event_ids(self) -> list[str]:
        """Every eventID the stand-in stored so far, once per stored copy."""
        ...

    def fail_next(self, count: int, kind: str) -> None:
        """Make the next ``count`` requests fail: ``transient`` (busy/5xx) or ``auth``."""
        ...

    def reject_event(self, event_id: str) -> None:
        """Make the stand-in refuse the record with this eventID permanently."""
        ...


def assert_refuses_credentials_in_url(config_type: Any, table: dict[str, Any], key: str = "url") -> None:
    """A connector's config refuses ``user:password@`` or a query in its URL ``key``, not repeating them.

    (They would be echoed in every error, log line and dead-letter reason that names the URL.)
    ``table``: a valid sink table without ``key``.
    """
    with pytest.raises(ConfigError) as info:
        config_type.validate({**table, key: "https://ops:Pa55-in-url@siem.example:8443"})
    assert f"{key} must not carry credentials" in str(info.value)
    assert "Pa55-in-url" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        config_type.validate({**table, key: "https://siem.example:8443/?token=Pa55-in-query"})
    assert f"{key} must be a base URL without a query string" in str(info.value)
    assert "Pa55-in-query" not in str(info.value)


def settled(outcomes: Sequence[Outcome], timeout: float = 30.0) -> list[Outcome]:
    """Outcomes with every PENDING one replaced by what its receipt resolved to (waiting for it).

    Fails the test when a receipt is missing or does not resolve within ``timeout`` seconds.
    """
    out: list[Outcome] = []
    deadline = time.monotonic() + timeout
    for outcome in outcomes:
        if outcome.status is Status.PENDING:
            assert outcome.receipt is not None, "PENDING outcome without a receipt"
            resolved = outcome.receipt.wait(max(0.0, deadline - time.monotonic()))
            assert resolved is not None, f"receipt not resolved within {timeout}s"
            outcome = resolved  # noqa: PLW2901 - the receipt's outcome stands for the pending one
        out.append(outcome)
    return out


def _send_until_final(sink: Sink, records: Sequence[Record], rounds: int = 6) -> dict[str, Outcome]:
    """Send, re-sending RETRY records like the pipeline does (without sleeping)."""
    final: dict[str, Outcome] = {}
    pending = list(records)
    for attempt in range(1, rounds + 1):
        if not pending:
            break
        outcomes = settled(sink.send(Batch(pending, attempt)))
        assert len(outcomes) == len(pending), "one outcome per record, in order"
        retry = []
        for rec, outcome in zip(pending, outcomes, strict=True):
            assert isinstance(outcome, Outcome)
            if outcome.status is Status.RETRY:
                retry.append(rec)
            else:
                final[str(rec.event_id)] = outcome
        pending = retry
    assert not pending, f"{len(pending)} records still RETRY after {rounds} sends"
    return final


class SinkContract:
    """Subclass in a connector's tests and provide a ``harness`` fixture (a SinkHarness)."""

    @pytest.fixture
    def sink(self, harness: SinkHarness) -> Any:
        """The harness's sink, opened, and closed after the test."""
        sink = harness.make_sink()
        sink.open()
        yield sink
        sink.close()

    def test_is_a_sink_with_sane_limits(self, sink: Sink) -> None:
        """The sink satisfies the protocol and asks for batches the pipeline can cut."""
        assert isinstance(sink, Sink)
        limits = sink.limits
        assert isinstance(limits, BatchLimits)
        assert limits.max_records >= 1
        assert limits.max_bytes >= 64 * 1024
        assert limits.concurrency >= 1
        assert limits.max_age > 0

    def test_delivers_every_record_exactly_once(self, sink: Sink, harness: SinkHarness) -> None:
        """A healthy SIEM gets each record once and every outcome is DELIVERED."""
        records = sample_records(23)
        outcomes = settled(sink.send(Batch(records)))
        assert [o.status for o in outcomes] == [Status.DELIVERED] * len(records)
        stored = Counter(harness.stored_event_ids())
        assert stored == Counter(str(r.event_id) for r in records)

    def test_empty_batch_sends_nothing(self, sink: Sink, harness: SinkHarness) -> None:
        """An empty batch returns no outcomes and stores nothing."""
        assert list(sink.send(Batch([]))) == []
        assert harness.stored_event_ids() == []

    def test_resend_is_final_and_never_rejected(self, sink: Sink) -> None:
        """Sending the same records again ends DELIVERED or DUPLICATE, never REJECTED."""
        records = sample_records(6)
        settled(sink.send(Batch(records)))
        again = settled(sink.send(Batch(records, attempt=2)))
        assert {o.status for o in again} <= {Status.DELIVERED, Status.DUPLICATE}

    def test_transient_failure_is_retry_not_loss(self, sink: Sink, harness: SinkHarness) -> None:
        """A busy SIEM yields RETRY (or RetryableError); a later send delivers everything."""
        records = sample_records(8)
        harness.fail_next(1, "transient")
        try:
            outcomes = settled(sink.send(Batch(records)))
        except RetryableError:
            pass
        else:
            assert all(o.status is Status.RETRY for o in outcomes), outcomes
            assert all(o.reason for o in outcomes)
        final = _send_until_final(sink, records)
        assert {o.status for o in final.values()} == {Status.DELIVERED}
        assert set(harness.stored_event_ids()) == {str(r.event_id) for r in records}

    def test_auth_failure_is_fatal_and_secret_free(self, sink: Sink, harness: SinkHarness) -> None:
        """Bad credentials stop the sink with a clear error that does not contain the secret."""
        harness.fail_next(1, "auth")
        with pytest.raises(FatalSinkError) as info:
            sink.send(Batch(sample_records(3)))
        text = str(info.value) + repr(info.value)
        assert text.strip()
        for secret in harness.secrets:
            assert secret not in text

    def test_poisoned_record_rejected_rest_delivered(self, sink: Sink, harness: SinkHarness) -> None:
        """One record the SIEM refuses is REJECTED with a reason; the others are DELIVERED."""
        records = sample_records(10)
        bad = str(records[4].event_id)
        harness.reject_event(bad)
        final = _send_until_final(sink, records)
        assert final[bad].status is Status.REJECTED
        assert final[bad].reason
        others = {k: v.status for k, v in final.items() if k != bad}
        assert set(others.values()) == {Status.DELIVERED}
        assert bad not in harness.stored_event_ids()

    def test_check_reports_healthy_sink(self, sink: Sink) -> None:
        """``check`` reaches the stand-in and says so without sending data."""
        result = sink.check()
        assert isinstance(result, CheckResult)
        assert result.ok, result.summary

    def test_unreachable_sink_is_retryable(self, harness: SinkHarness) -> None:
        """A dead endpoint is a retryable condition for send and an error for check."""
        sink = harness.unreachable_sink()
        sink.open()
        try:
            with pytest.raises(SinkError):
                sink.check()
            try:
                outcomes = sink.send(Batch(sample_records(2)))
            except RetryableError:
                pass
            else:
                assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY]
        finally:
            sink.close()

    def test_secrets_absent_from_repr(self, harness: SinkHarness) -> None:
        """Neither the sink nor its config shows a secret in its repr or str."""
        sink = harness.make_sink()
        texts = [repr(sink), str(sink), repr(getattr(sink, "config", None))]
        for secret in harness.secrets:
            for text in texts:
                assert secret not in text

    def test_encoder_is_deterministic_and_complete(self, harness: SinkHarness) -> None:
        """The offline encoder yields bodies holding every record, identically each time."""
        encoder = harness.encoder()
        records = sample_records(12)
        bodies = encoder.encode(records)
        assert bodies
        assert all(isinstance(b, bytes) and b for b in bodies)
        assert encoder.encode(records) == bodies
        joined = b"".join(bodies)
        for rec in records:
            assert str(rec.event_id).encode() in joined
        assert isinstance(encoder.content_type, str)
        assert "/" in encoder.content_type

    def test_close_twice_is_safe(self, harness: SinkHarness) -> None:
        """Closing an opened sink twice raises nothing."""
        sink = harness.make_sink()
        sink.open()
        sink.close()
        sink.close()
