"""ECS mapping: golden checks on the real corpus and on hand-written records for shapes it lacks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trailrelay.contract import Origin, Record
from trailrelay.testing import load_records, require_corpus
from trailrelay_elastic.ecs import to_ecs


@pytest.fixture(scope="module")
def corpus() -> dict[str, Record]:
    return {str(r.event_id): r for r in load_records(require_corpus("cloudtrail"))}


def ecs_of(corpus: dict[str, Record], event_id: str) -> dict[str, Any]:
    return to_ecs(corpus[event_id].document())


def get(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def test_console_login_success_without_mfa(corpus: dict[str, Record]) -> None:
    doc = ecs_of(corpus, "70e5932e-9022-4b38-837e-ca10dad94eb7")
    assert get(doc, "event.action") == "ConsoleLogin"
    assert get(doc, "event.outcome") == "success"
    assert get(doc, "event.category") == ["authentication"]
    assert get(doc, "event.type") == ["info"]
    assert get(doc, "aws.cloudtrail.console_login.additional_eventdata.mfa_used") is False
    assert get(doc, "aws.cloudtrail.event_type") == "AwsConsoleSignIn"


def test_console_login_success_with_mfa(corpus: dict[str, Record]) -> None:
    doc = ecs_of(corpus, "8feee4c2-5e27-4857-8475-bfa7e7b6d791")
    assert get(doc, "event.outcome") == "success"
    assert get(doc, "aws.cloudtrail.console_login.additional_eventdata") == {
        "mobile_version": False,
        "login_to": "https://us-east-1.console.aws.amazon.com/vpc/home?region=us-east-1&state=hashArgs%23vpcs%3A&isauthcode=true",
        "mfa_used": True,
    }
    assert get(doc, "user.name") == "bert-jan"
    assert get(doc, "user.id") == "arn:aws:iam::123837392027:user/bert-jan"
    assert get(doc, "aws.cloudtrail.user_identity.principal_id") == "AIDATFQR7NSC5AU2ZV3IE"
    assert get(doc, "related.user") == [
        "AIDATFQR7NSC5AU2ZV3IE",
        "arn:aws:iam::123837392027:user/bert-jan",
        "bert-jan",
    ]
    assert get(doc, "source.ip") == "10.8.8.10"
    assert get(doc, "related.ip") == ["10.8.8.10"]
    assert get(doc, "user_agent.name") == "Firefox"
    assert get(doc, "user_agent.version") == "102.0"
    assert get(doc, "tls.client.server_name") == "us-east-1.signin.aws.amazon.com"
    assert get(doc, "related.hosts") == ["us-east-1.signin.aws.amazon.com"]


def test_console_login_failure() -> None:
    event = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE0000000001",
            "accountId": "111122223333",
            "accessKeyId": "",
            "userName": "mallory",
        },
        "eventTime": "2026-03-02T09:00:00Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.9",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        "errorMessage": "Failed authentication",
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": "Failure"},
        "additionalEventData": {
            "LoginTo": "https://console.aws.amazon.com/console/home",
            "MobileVersion": "No",
            "MFAUsed": "Yes",
        },
        "eventID": "0b7d7a2e-0000-4000-8000-000000000001",
        "eventType": "AwsConsoleSignIn",
        "recipientAccountId": "111122223333",
    }
    doc = to_ecs(event)
    assert get(doc, "event.outcome") == "failure"
    assert get(doc, "aws.cloudtrail.error_message") == "Failed authentication"
    assert get(doc, "aws.cloudtrail.console_login.additional_eventdata.mfa_used") is True
    assert get(doc, "user.name") == "mallory"
    assert get(doc, "aws.cloudtrail.user_identity.access_key_id") is None  # empty strings are dropped
    assert get(doc, "user_agent.name") == "Chrome"
    assert get(doc, "user_agent.os.name") == "Windows"
    assert get(doc, "aws.cloudtrail.request_parameters") is None


def test_assume_role_denied(corpus: dict[str, Record]) -> None:
    doc = ecs_of(corpus, "46558847-8b84-43de-8c96-302aa4744763")
    assert get(doc, "event.action") == "AssumeRole"
    assert get(doc, "event.category") == ["authentication"]
    assert get(doc, "event.outcome") == "failure"
    assert get(doc, "aws.cloudtrail.error_code") == "AccessDenied"
    assert "is not authorized to perform: sts:AssumeRole" in get(doc, "aws.cloudtrail.error_message")
    assert get(doc, "cloud.service.name") == "sts"


def test_assume_role_success_keeps_request_and_response(corpus: dict[str, Record]) -> None:
    record = corpus["d769ddfd-2cda-4cfa-b33f-05d3b886921d"]
    event = record.document()
    doc = to_ecs(event)
    assert get(doc, "event.outcome") == "success"
    request = get(doc, "aws.cloudtrail.request_parameters")
    assert orjson.loads(request) == event["requestParameters"]  # JSON text, not a Java map string
    assert get(doc, "aws.cloudtrail.flattened.request_parameters") == event["requestParameters"]
    assert (
        get(doc, "aws.cloudtrail.flattened.response_elements.assumedRoleUser.arn")
        == (event["responseElements"]["assumedRoleUser"]["arn"])
    )
    assert event["requestParameters"]["roleSessionName"] not in get(doc, "related.user")


def test_assumed_role_identity_with_tls_and_error(corpus: dict[str, Record]) -> None:
    doc = ecs_of(corpus, "450230d4-b39e-4a18-a6a0-d07a6e2105cb")
    role = "arn:aws:iam::457448411975:role/stratus-red-team-ec2-get-password-data-role"
    assert get(doc, "user.name") == "stratus-red-team-ec2-get-password-data-role"
    assert get(doc, "user.id") == role
    assert get(doc, "aws.cloudtrail.user_identity.type") == "AssumedRole"
    assert get(doc, "aws.cloudtrail.user_identity.session_context.session_issuer.arn") == role
    assert (
        get(doc, "aws.cloudtrail.user_identity.session_context.creation_date") == "2024-07-30T21:31:15.000Z"
    )
    assert get(doc, "aws.cloudtrail.user_identity.session_context.mfa_authenticated") == "false"
    assert get(doc, "related.user")[0] == "aws-go-sdk-1722375070115152000"  # the session name, first
    assert get(doc, "tls") == {
        "version_protocol": "tls",
        "version": "1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "client": {"server_name": "ec2.apiso-northsouth-3r.amazonaws.com"},
    }
    assert "related" in doc and "ec2.apiso-northsouth-3r.amazonaws.com" not in (
        get(doc, "related.hosts") or []
    )
    assert get(doc, "aws.cloudtrail.error_code") == "Client.UnauthorizedOperation"
    assert get(doc, "event.outcome") == "failure"
    assert get(doc, "related.hosts") == ["i-i2jnm5swa59p4fxg"]


def test_source_ip_address_that_is_not_an_ip(corpus: dict[str, Record]) -> None:
    internal = ecs_of(corpus, "e9f72371-5fc5-48fc-999d-462e13fdc6bd")
    assert get(internal, "source") == {"address": "AWS Internal"}
    assert get(internal, "related.hosts") is None  # a phrase, not a host
    leading_zeros = ecs_of(corpus, "865d9377-9c6b-4fd7-8aad-725e95f6a140")
    assert get(leading_zeros, "source") == {"address": "225.01.00.16"}  # not a valid IP literal
    assert "225.01.00.16" in get(leading_zeros, "related.hosts")
    assert get(leading_zeros, "related.ip") is None


def test_service_dns_name_as_source() -> None:
    event = {
        "eventVersion": "1.08",
        "userIdentity": {"accountId": "111122223333", "invokedBy": "secretsmanager.amazonaws.com"},
        "eventTime": "2026-03-02T10:17:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "RotationSucceeded",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "secretsmanager.amazonaws.com",
        "userAgent": "secretsmanager.amazonaws.com",
        "eventID": "0b7d7a2e-0000-4000-8000-000000000002",
        "eventType": "AwsServiceEvent",
        "serviceEventDetails": {"versionId": "v2", "sourceIpAddress": "203.0.113.5"},
        "recipientAccountId": "111122223333",
    }
    doc = to_ecs(event)
    assert get(doc, "source") == {"address": "secretsmanager.amazonaws.com"}
    assert get(doc, "related.hosts") is None  # AWS service names are not hosts
    assert get(doc, "related.ip") == ["203.0.113.5"]
    assert get(doc, "aws.cloudtrail.user_identity.invoked_by") == "secretsmanager.amazonaws.com"
    assert get(doc, "cloud.account.id") == "111122223333"
    assert get(doc, "aws.cloudtrail.flattened.service_event_details.versionId") == "v2"
    assert get(doc, "user") is None


def test_federated_user(corpus: dict[str, Record]) -> None:
    event = corpus["91529247-c4c4-4793-afc8-d70bbcfe9d19"].document()
    doc = to_ecs(event)
    ident = event["userIdentity"]
    assert get(doc, "aws.cloudtrail.user_identity.type") == "FederatedUser"
    assert get(doc, "user.id") == ident["principalId"]
    assert get(doc, "user.name") == ident["sessionContext"]["sessionIssuer"]["userName"]
    assert get(doc, "related.user")[0] == ident["arn"].rsplit("/", 1)[1]


def test_identity_center_user() -> None:
    event = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IdentityCenterUser",
            "accountId": "111122223333",
            "onBehalfOf": {
                "userId": "906ec47e-1091-70b1-3a29-8f1c2f0b0a01",
                "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-9067642ac7",
            },
            "credentialId": "EXAMPLEVHULjJdTUdPJfofVa1sufHDoj7aYcOYcxFVllWR_Whr1fEXAMPLE",
        },
        "eventTime": "2026-03-02T11:00:00Z",
        "eventSource": "sso.amazonaws.com",
        "eventName": "ListApplications",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "2001:db8::1",
        "userAgent": "Mozilla/5.0",
        "requestParameters": {"maxResults": 100},
        "responseElements": None,
        "eventID": "0b7d7a2e-0000-4000-8000-000000000003",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }
    doc = to_ecs(event)
    assert get(doc, "user.id") == "906ec47e-1091-70b1-3a29-8f1c2f0b0a01"
    assert get(doc, "aws.cloudtrail.user_identity.on_behalf_of") == {
        "user_id": "906ec47e-1091-70b1-3a29-8f1c2f0b0a01",
        "identity_store_arn": "arn:aws:identitystore::111122223333:identitystore/d-9067642ac7",
    }
    assert get(doc, "aws.cloudtrail.user_identity.credential_id").startswith("EXAMPLE")
    assert get(doc, "related.user") == ["906ec47e-1091-70b1-3a29-8f1c2f0b0a01"]
    assert get(doc, "source.ip") == "2001:db8::1"
    assert get(doc, "aws.cloudtrail.management_event") == "true"
    assert get(doc, "aws.cloudtrail.read_only") is True
    assert get(doc, "cloud.service.name") == "sso"


def test_sso_email_session_name() -> None:
    event = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:jane.doe@example.com",
            "arn": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/jane.doe@example.com",
            "accountId": "111122223333",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLE",
                    "userName": "AWSReservedSSO_Admin_0123456789abcdef",
                    "arn": "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef",
                    "accountId": "111122223333",
                },
                "attributes": {"creationDate": "20260302T090000Z", "mfaAuthenticated": "false"},
            },
        },
        "eventTime": "2026-03-02T09:05:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"userName": "backdoor"},
        "responseElements": {
            "user": {
                "userName": "backdoor",
                "userId": "AIDAEXAMPLENEWUSER01",
                "arn": "arn:aws:iam::111122223333:user/backdoor",
            }
        },
        "eventID": "0b7d7a2e-0000-4000-8000-000000000004",
        "recipientAccountId": "111122223333",
    }
    doc = to_ecs(event)
    assert get(doc, "user.email") == "jane.doe@example.com"
    assert get(doc, "related.user") == [
        "jane.doe@example.com",
        "jane.doe",
        "backdoor",
        "AIDAEXAMPLENEWUSER01",
        "AROAEXAMPLE:jane.doe@example.com",
        "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef",
        "AWSReservedSSO_Admin_0123456789abcdef",
    ]
    assert get(doc, "user.target") == {"id": "AIDAEXAMPLENEWUSER01", "name": "backdoor"}
    assert get(doc, "event.category") == ["iam"]
    assert get(doc, "event.type") == ["user", "creation"]
    # basic ISO date (yyyyMMdd'T'HHmmssZ) as the pipeline accepts it
    assert (
        get(doc, "aws.cloudtrail.user_identity.session_context.creation_date") == "2026-03-02T09:00:00.000Z"
    )


def test_digest_record() -> None:
    event = {
        "awsAccountId": "111122223333",
        "digestStartTime": "2026-03-02T10:00:00Z",
        "digestEndTime": "2026-03-02T11:00:00Z",
        "digestS3Bucket": "trail-bucket",
        "digestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/03/02/111122223333_CloudTrail-Digest_us-east-1_org_us-east-1_20260302T110000Z.json.gz",
        "digestPublicKeyFingerprint": "0e8d5c3c6b0f2f6c1e9c2d4b8a6f0e1d",
        "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": "2026-03-02T10:59:59Z",
        "oldestEventTime": "2026-03-02T10:00:01Z",
        "previousDigestS3Bucket": "trail-bucket",
        "previousDigestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/03/02/prev.json.gz",
        "previousDigestHashValue": "a8f5f167f44f4964e6c998dee827110c",
        "previousDigestHashAlgorithm": "SHA-256",
        "previousDigestSignature": "6e2b1f",
        "logFiles": [
            {
                "s3Bucket": "trail-bucket",
                "s3Object": "AWSLogs/x.json.gz",
                "hashValue": "00ff",
                "hashAlgorithm": "SHA-256",
                "newestEventTime": "2026-03-02T10:59:59Z",
                "oldestEventTime": "2026-03-02T10:00:01Z",
            }
        ],
    }
    doc = to_ecs(event)
    assert get(doc, "@timestamp") == "2026-03-02T11:00:00.000Z"
    assert get(doc, "cloud.account.id") == "111122223333"
    assert get(doc, "file.path") == event["digestS3Object"]
    digest = get(doc, "aws.cloudtrail.flattened.digest")
    assert digest["start_time"] == "2026-03-02T10:00:00.000Z"
    assert digest["public_key_fingerprint"] == "0e8d5c3c6b0f2f6c1e9c2d4b8a6f0e1d"
    assert digest["previous_hash_algorithm"] == "SHA-256"
    assert digest["log_files"][0]["hashValue"] == "00ff"
    assert get(doc, "related.hash") == ["a8f5f167f44f4964e6c998dee827110c"]
    assert get(doc, "event.kind") == "event"


def test_nulls_dashes_and_empties_are_dropped() -> None:
    event = {
        "eventTime": "2026-03-02T09:05:00Z",
        "eventName": "PutObject",
        "eventSource": "s3.amazonaws.com",
        "userAgent": "-",
        "requestParameters": {"bucketName": "b", "x": None, "y": "", "z": "none", "w": [], "v": {"u": None}},
        "resources": [
            {"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"},
            {"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"},
        ],
    }
    doc = to_ecs(event)
    assert get(doc, "aws.cloudtrail.flattened.request_parameters") == {"bucketName": "b"}
    assert get(doc, "aws.cloudtrail.request_parameters") == '{"bucketName":"b"}'
    assert get(doc, "aws.cloudtrail.resources") == [{"arn": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}]
    assert get(doc, "user_agent") is None
    assert get(doc, "event.category") == ["file"]
    assert get(doc, "event.type") == ["change"]


def _no_empty(value: Any, path: str = "") -> None:
    if isinstance(value, dict):
        assert value, f"empty object at {path}"
        for k, v in value.items():
            _no_empty(v, f"{path}.{k}")
    elif isinstance(value, list):
        assert value, f"empty list at {path}"
        for v in value:
            _no_empty(v, path)
    else:
        assert value is not None and value != "", f"empty value at {path}"


def test_whole_corpus_maps_cleanly(corpus: dict[str, Record]) -> None:
    """Every real record maps, serializes, and holds no null/empty value (as the pipeline's last step)."""
    for record in corpus.values():
        doc = to_ecs(record.document())
        _no_empty(doc)
        assert orjson.loads(orjson.dumps(doc)) == doc
        assert doc["event"]["kind"] == "event"
        assert doc["cloud"]["provider"] == "aws"


def test_mapping_does_not_modify_the_event() -> None:
    raw = b'{"eventTime":"2026-03-02T09:05:00Z","eventName":"X","requestParameters":{"a":null,"b":1}}'
    record = Record.from_bytes(raw, Origin("file", "x"))
    before = orjson.dumps(record.document())
    to_ecs(record.document())
    assert orjson.dumps(record.document()) == before
