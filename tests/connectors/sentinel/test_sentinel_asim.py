"""ASIM compatibility: what Microsoft's AWSCloudTrail parsers compute from the rows we send.

The parsers are KQL; we replay the expressions they apply to our columns (quoted below from
Azure/Azure-Sentinel ``Parsers/ASimAuthentication/Parsers/ASimAuthenticationAWSCloudTrail.yaml``
and ``Parsers/ASimAuditEvent/Parsers/ASimAuditEventAWSCloudTrail.yaml``) with small Python
equivalents of the KQL operators they use:

* ``has`` matches terms (maximal alphanumeric runs), not raw substrings (Kusto string-operator
  docs); a multi-term needle must appear as a contiguous run of terms;
* ``parse ... with * 'A' X:string 'B' *`` is an exact substring match;
* ``isempty`` is true for null and "".
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import orjson
from test_sentinel_mapping import by_id, corpus, fresh

from trailrelay.contract import Origin, Record
from trailrelay_sentinel.mapping import map_record

# Text the parsers match on, verbatim.
AUTH_FILTER = "ConsoleLogin"  # | where EventName == 'ConsoleLogin'
AUTH_SUCCESS = "Success"  # EventResult = iff (ResponseElements has 'Success', 'Success', 'Failure')
AUTH_MFA = '"MFAUsed": "Yes"'  # LogonMethod = iff (AdditionalEventData has '"MFAUsed": "Yes"', 'MFA','')
AUTH_MOBILE = (
    '"MobileVersion":"Yes"'  # SrcDeviceType = iff (AdditionalEventData has '"MobileVersion":"Yes"', ...)
)
AUTH_LOGIN_TO = ('"LoginTo":"', '"')  # parse AdditionalEventData with * '"LoginTo":"' TargetUrl:string '"' *
AUTH_USER_TYPES = {
    "Root": "Admin",
    "IAMUser": "Regular",
    "AssumedRole": "Service",
    "Role": "Service",
    "FederatedUser": "Regular",
    "Directory": "Other",
    "AWSAccount": "Guest",
    "AWSService": "Application",
    "Unknown": "Other",
}
AUDIT_USER_TYPES = {"AWSService": "Service", "Directory": "Other", "Unknown": "Other", "Root": "Admin"}

_TERM = re.compile(r"[A-Za-z0-9]+")


def kql_has(haystack: str | None, needle: str) -> bool:
    terms = [t.lower() for t in _TERM.findall(haystack or "")]
    want = [t.lower() for t in _TERM.findall(needle)]
    return any(terms[i : i + len(want)] == want for i in range(len(terms) - len(want) + 1))


def kql_parse(text: str | None, start: str, end: str) -> str | None:
    if not text or start not in text:
        return None
    rest = text.split(start, 1)[1]
    return rest.split(end, 1)[0] if end in rest else None


def isempty(value: Any) -> bool:
    return value is None or value == ""


def asim_authentication(row: dict[str, Any]) -> dict[str, Any] | None:
    """ASimAuthenticationAWSCloudTrail, the parts that read our columns."""
    if row.get("EventName") != AUTH_FILTER:
        return None
    utype = row.get("UserIdentityType")
    principal = (
        row.get("UserIdentityStoreArn")
        if utype == "IdentityCenterUser"
        else row.get("UserIdentityPrincipalid")
    )
    username = (
        row.get("UserIdentityUserId") if utype == "IdentityCenterUser" else row.get("UserIdentityUserName")
    )
    extra = row.get("AdditionalEventData")
    if username == "HIDDEN_DUE_TO_SECURITY_REASONS":
        target = ""
    elif utype == "IAMUser":
        target = username
    elif utype == "Root":
        target = "root"
    elif utype == "AssumedRole":
        target = str(row.get("UserIdentityArn", "")).split("/")[-1]
    else:
        target = username
    url = kql_parse(extra, *AUTH_LOGIN_TO)
    return {
        "EventResult": "Success" if kql_has(row.get("ResponseElements"), AUTH_SUCCESS) else "Failure",
        "LogonMethod": "MFA" if kql_has(extra, AUTH_MFA) else "",
        "SrcDeviceType": "Mobile Device" if kql_has(extra, AUTH_MOBILE) else "Computer",
        "TargetUserId": str(principal or "").split(":")[0],
        "TargetUsername": target,
        "TargetUserType": AUTH_USER_TYPES.get(str(utype)),
        "LogonTarget": (url or "").split("?")[0],
        "EventOriginalResultDetails": row.get("ErrorMessage"),
        "SrcIpAddr": row.get("SourceIpAddress"),
    }


def asim_audit(row: dict[str, Any]) -> dict[str, Any]:
    """ASimAuditEventAWSCloudTrail, the parts that read our columns."""
    resources = json.loads(row["Resources"]) if row.get("Resources") else []
    first = next((r for r in resources if r.get("ARN")), {})
    params = json.loads(row["RequestParameters"]) if row.get("RequestParameters") else None
    src = row.get("SourceIpAddress", "")
    try:
        is_ipv4 = isinstance(ipaddress.ip_address(src), ipaddress.IPv4Address)
    except ValueError:
        is_ipv4 = False
    return {
        "EventResult": "Success"
        if isempty(row.get("ErrorMessage")) and isempty(row.get("ErrorCode"))
        else "Failure",
        "EventSubType": row.get("EventTypeName"),
        "EventUid": row.get("AwsEventId"),
        "Object": first.get("ARN"),
        "OriginalObjectType": first.get("type"),
        "TargetHostname": params.get("Host") if isinstance(params, dict) else None,
        "ActorUserType": AUDIT_USER_TYPES.get(str(row.get("UserIdentityType")), "Regular"),
        "ActorUserId": row.get("UserIdentityAccountId"),
        "SrcIpAddr": src if is_ipv4 else "",
    }


def row_of(doc: dict[str, Any]) -> dict[str, Any]:
    return map_record(Record.from_bytes(orjson.dumps(doc), Origin("file", "asim")))


def test_console_login_with_mfa() -> None:
    out = asim_authentication(map_record(fresh(by_id()["8feee4c2-5e27-4857-8475-bfa7e7b6d791"])))
    assert out is not None
    assert out["EventResult"] == "Success"
    assert out["LogonMethod"] == "MFA"
    assert out["SrcDeviceType"] == "Computer"
    assert out["TargetUsername"] == "bert-jan" and out["TargetUserType"] == "Regular"
    assert out["TargetUserId"] == "AIDATFQR7NSC5AU2ZV3IE"
    assert out["LogonTarget"] == "https://us-east-1.console.aws.amazon.com/vpc/home"


def test_console_login_without_mfa() -> None:
    row = map_record(fresh(by_id()["865d9377-9c6b-4fd7-8aad-725e95f6a140"]))
    out = asim_authentication(row)
    assert out is not None and out["EventResult"] == "Success" and out["LogonMethod"] == ""
    assert out["LogonTarget"] == "https://console.aws.amazon.com/console/home"
    # The analytic rule "Login to AWS Management Console without MFA" uses parse_json.
    assert json.loads(row["AdditionalEventData"])["MFAUsed"] == "No"
    assert json.loads(row["ResponseElements"])["ConsoleLogin"] == "Success"


def test_failed_console_login_root_and_identity_center() -> None:
    failed = row_of(
        {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDAEXAMPLE",
                "accountId": "111122223333",
                "userName": "bob",
            },
            "eventTime": "2026-03-02T10:00:00Z",
            "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin",
            "eventType": "AwsConsoleSignIn",
            "errorMessage": "Failed authentication",
            "responseElements": {"ConsoleLogin": "Failure"},
            "additionalEventData": {
                "LoginTo": "https://console.aws.amazon.com/console/home",
                "MobileVersion": "Yes",
                "MFAUsed": "No",
            },
            "eventID": "f0000000-0000-4000-8000-000000000001",
        }
    )
    out = asim_authentication(failed)
    assert out is not None
    assert out["EventResult"] == "Failure" and out["EventOriginalResultDetails"] == "Failed authentication"
    assert out["SrcDeviceType"] == "Mobile Device"
    root = asim_authentication(
        row_of(
            {
                "userIdentity": {
                    "type": "Root",
                    "principalId": "111122223333",
                    "arn": "arn:aws:iam::111122223333:root",
                },
                "eventName": "ConsoleLogin",
                "responseElements": {"ConsoleLogin": "Success"},
                "eventID": "f0000000-0000-4000-8000-000000000002",
            }
        )
    )
    assert root is not None and root["TargetUsername"] == "root" and root["TargetUserType"] == "Admin"
    idc = asim_authentication(
        row_of(
            {
                "userIdentity": {
                    "type": "IdentityCenterUser",
                    "accountId": "111122223333",
                    "onBehalfOf": {
                        "userId": "u-123",
                        "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1",
                    },
                },
                "eventName": "ConsoleLogin",
                "responseElements": {"ConsoleLogin": "Success"},
                "eventID": "f0000000-0000-4000-8000-000000000003",
            }
        )
    )
    assert idc is not None and idc["TargetUsername"] == "u-123"
    assert idc["TargetUserId"] == "arn"  # split(identityStoreArn, ':')[0], exactly as the parser does


def test_audit_event_on_corpus_records() -> None:
    err = asim_audit(map_record(fresh(by_id()["46558847-8b84-43de-8c96-302aa4744763"])))
    assert err["EventResult"] == "Failure"
    ok = asim_audit(map_record(fresh(by_id()["995c4653-3c53-4a06-a0f0-f5531997b741"])))
    assert ok["EventResult"] == "Success"
    assert ok["Object"] and str(ok["Object"]).startswith("arn:aws:kms:")
    s3 = asim_audit(map_record(fresh(by_id()["bf575a0c-c344-4302-a468-00e6a84a127a"])))
    assert s3["Object"] and s3["TargetHostname"]
    svc = asim_audit(map_record(fresh(by_id()["895dc875-cb08-45a5-b8c2-9158838741c0"])))
    assert svc["ActorUserType"] == "Service"  # userIdentity had no type, only invokedBy
    assert svc["SrcIpAddr"] == ""  # "ec2.amazonaws.com" is not an address


def test_every_corpus_row_parses_where_the_parsers_parse_json() -> None:
    logins = 0
    for rec in corpus():
        row = map_record(fresh(rec))
        for col in (
            "Resources",
            "RequestParameters",
            "ResponseElements",
            "AdditionalEventData",
            "ServiceEventDetails",
        ):
            if col in row:
                json.loads(row[col])  # todynamic()/parse_json() must succeed
        asim_audit(row)
        out = asim_authentication(row)
        if out is not None:
            logins += 1
            assert out["EventResult"] in ("Success", "Failure")
            assert out["LogonTarget"].startswith("https://")  # the exact-text parse found LoginTo
        assert row.get("SessionMfaAuthenticated") in (None, True, False)
    assert logins >= 3
