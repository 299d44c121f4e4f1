"""Pseudonymization by field path: tokens, truncation, drop, e-mails, per-sink profiles."""

from __future__ import annotations

import copy
import hmac
import ipaddress
import pickle
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.errors import ConfigError, InputError
from trailrelay.privacy import (
    STANDARD_PROFILE,
    FieldRule,
    Key,
    PrivacyConfig,
    PrivacyProfile,
    Pseudonymizer,
    Tokenizer,
    build_pseudonymizers,
)
from trailrelay.privacy.ipaddr import truncate_ip
from trailrelay.privacy.tokens import TOKEN_PATTERN, normalize
from trailrelay.record import Origin, Record, RiskTag
from trailrelay.testing import SAMPLE_EVENTS, load_records

KEY = Key(b"0123456789abcdefghijklmnopqrstuvwxyzABCD", "test")
OTHER_KEY = Key(b"ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxw", "test-other")
ORIGIN = Origin("file", "/tmp/in.json", key="in.json")


def profile(*rules: tuple[str, str], emails: list[str] | None = None, **opts: Any) -> PrivacyProfile:
    return PrivacyProfile(fields=[FieldRule(path=p, method=m, **opts) for p, m in rules], emails=emails or [])


def record(doc: dict[str, Any], *, pretty: bool = False, index: int = 3) -> Record:
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if pretty else 0)
    return Record.from_bytes(raw, ORIGIN, index)


def event(**over: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE_EVENTS[0])
    doc.update(over)
    return doc


# -- tokens -----------------------------------------------------------------------------------


def test_token_format_is_documented_prefix_and_base32() -> None:
    tok = Tokenizer(KEY).token("alice")
    assert TOKEN_PATTERN.fullmatch(tok), tok
    assert re.fullmatch(r"tr1_[a-z2-7]{20}", tok)


def test_key_mac_is_rfc_hmac_sha256() -> None:
    material = b"0123456789abcdefghijklmnopqrstuvwxyzABCD"
    for message in (b"", b"alice", b"x" * 200):
        assert Key(material, "t").mac(message) == hmac.digest(material, message, "sha256")
    long = bytes(range(100))  # longer than the block: hashed first, as RFC 2104 says
    assert Key(long, "t").mac(b"m") == hmac.digest(long, b"m", "sha256")


def test_pseudonyms_stable_across_records_and_runs() -> None:
    prof = profile(("userIdentity.userName", "pseudonymize"))
    first = Pseudonymizer(prof, KEY).apply(record(event(eventID="a")))
    second = Pseudonymizer(prof, KEY).apply(record(event(eventID="b")))  # a new run: new instance, cold cache
    fresh_key = Key(b"0123456789abcdefghijklmnopqrstuvwxyzABCD", "same material, other source")
    third = Pseudonymizer(prof, fresh_key).apply(record(event(eventID="c")))
    names = {r.document()["userIdentity"]["userName"] for r in (first, second, third)}
    assert len(names) == 1
    assert TOKEN_PATTERN.fullmatch(names.pop())


def test_different_key_different_token() -> None:
    prof = profile(("userIdentity.userName", "pseudonymize"), ("sourceIPAddress", "pseudonymize"))
    a = Pseudonymizer(prof, KEY).apply(record(event())).document()
    b = Pseudonymizer(prof, OTHER_KEY).apply(record(event())).document()
    assert a["userIdentity"]["userName"] != b["userIdentity"]["userName"]
    assert a["sourceIPAddress"] != b["sourceIPAddress"]
    assert KEY.fingerprint != OTHER_KEY.fingerprint


def test_same_person_same_token_across_fields_unless_domain_separated() -> None:
    doc = event(requestParameters={"userName": "alice"})
    shared = Pseudonymizer(
        profile(("userIdentity.userName", "pseudonymize"), ("requestParameters.userName", "pseudonymize")),
        KEY,
    )
    out = shared.apply(record(doc)).document()
    assert out["userIdentity"]["userName"] == out["requestParameters"]["userName"]
    separate = Pseudonymizer(
        PrivacyProfile(
            fields=[
                FieldRule(path="userIdentity.userName", method="pseudonymize"),
                FieldRule(path="requestParameters.userName", method="pseudonymize", domain="targets"),
            ]
        ),
        KEY,
    )
    out2 = separate.apply(record(doc)).document()
    assert out2["userIdentity"]["userName"] == out["userIdentity"]["userName"]
    assert out2["requestParameters"]["userName"] != out2["userIdentity"]["userName"]


def test_normalization_one_person_one_token() -> None:
    tok = Tokenizer(KEY)
    assert tok.token("Alice@Example.COM") == tok.token("alice@example.com")
    assert tok.token("2001:DB8:0:0::1") == tok.token("2001:db8::1")
    assert tok.token("010.000.000.001") == tok.token("10.0.0.1")
    assert tok.token("Alice") != tok.token("alice")  # IAM names are used exactly
    assert normalize("AWS Internal") == "AWS Internal"


# -- the record contract ----------------------------------------------------------------------


def test_apply_returns_new_record_and_leaves_the_shared_one_untouched() -> None:
    original = record(event(), pretty=True)
    original.add_tags([RiskTag("cloudtrail-stop", "CloudTrail stopped", "high", "T1562.008")])
    original.ticket = object()
    raw_before = original.raw
    doc_before = copy.deepcopy(original.document())
    prof = profile(("userIdentity.userName", "pseudonymize"), ("sourceIPAddress", "truncate"))
    out = Pseudonymizer(prof, KEY).apply(original)
    assert out is not original
    assert original.raw == raw_before
    assert original.document() == doc_before
    assert not original.modified
    assert original.routing.user_identity is not None
    assert original.routing.user_identity.user_name == "alice"
    assert out.modified
    assert (out.origin, out.index, out.tags, out.ticket) == (
        original.origin,
        original.index,
        original.tags,
        original.ticket,
    )
    assert out.high_risk
    # routing is decoded again from the new bytes: no raw name or address survives there either
    assert out.routing.user_identity is not None
    assert TOKEN_PATTERN.fullmatch(out.routing.user_identity.user_name or "")
    assert out.routing.source_ip == "203.0.113.0"
    assert out.event_id == original.event_id
    assert b"alice" not in out.raw.replace(b"arn:aws:iam::111122223333:user/alice", b"")
    assert orjson.loads(out.raw) == out.document()


def test_record_without_the_fields_is_the_same_object_with_its_own_bytes() -> None:
    doc = event()
    del doc["userIdentity"]
    doc["sourceIPAddress"] = "cloudtrail.amazonaws.com"
    original = record(doc)
    prof = profile(("userIdentity.userName", "pseudonymize"), ("sourceIPAddress", "truncate"))
    out = Pseudonymizer(prof, KEY).apply(original)
    assert out is original
    assert not out.modified
    assert out.raw == orjson.dumps(doc)  # not re-serialised
    # bytes that are not the parsed event written out (here: spacing) go out re-written
    pretty = record(doc, pretty=True)
    rewritten = Pseudonymizer(prof, KEY).apply(pretty)
    assert rewritten is not pretty
    assert rewritten.raw == orjson.dumps(doc)
    assert pretty.raw == orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def test_fields_absent_from_the_bytes_skip_the_parse() -> None:
    original = record(event())
    pz = Pseudonymizer(profile(("requestParameters.userName", "pseudonymize")), KEY)
    assert pz.apply(original) is original
    assert original._doc is None  # never parsed


def test_escaped_keys_are_still_found() -> None:
    raw = b'{"eventID":"x","eventName":"CreateUser","requestParameters":{"user\\u004eame":"bob"}}'
    out = Pseudonymizer(profile(("requestParameters.userName", "pseudonymize")), KEY).apply(
        Record.from_bytes(raw, ORIGIN)
    )
    assert out.modified
    assert out.document()["requestParameters"]["userName"] == Tokenizer(KEY).token("bob")


def test_apply_twice_changes_nothing_more() -> None:
    """Replaying a dead letter of a pseudonymized sink must not hash tokens again."""
    pz = Pseudonymizer(STANDARD_PROFILE, KEY)
    once = pz.apply(record(event(requestParameters={"userName": "bob@example.com"})))
    twice = pz.apply(Record.from_bytes(once.raw, ORIGIN))
    assert not twice.modified
    assert twice.raw == once.raw


@pytest.mark.parametrize(
    "raw",
    [
        (
            b'{"eventID":"d1","sourceIPAddress":"203.0.113.77","sourceIPAddress":"AWS Internal",'
            b'"userIdentity":{"type":"IAMUser","userName":"alice","userName":null}}'
        ),
        b'{"eventID":"d2","userIdentity":{"type":"IAMUser","userName":"alice"},"userIdentity":{"type":"IAMUser"}}',
        b'{"eventID":"d3","requestParameters":{"mail":"alice@example.com"},"requestParameters":{}}',
        b'{"eventID":"d4","resources":[{"ARN":"arn:aws:iam::1:user/alice","ARN":"arn:aws:iam::1:role/R"}]}',
    ],
)
def test_duplicate_keys_never_carry_the_hidden_value_out(raw: bytes) -> None:
    """The parse keeps a duplicate key's last value; the first must not go out in the bytes."""
    prof = PrivacyProfile(
        fields=[*STANDARD_PROFILE.fields, FieldRule(path="resources.*.ARN", method="principal")],
        emails=STANDARD_PROFILE.emails,
    )
    rec = Record.from_bytes(raw, ORIGIN)
    out = Pseudonymizer(prof, KEY).apply(rec)
    assert b"alice" not in out.raw
    assert b"203.0.113.77" not in out.raw
    assert orjson.loads(out.raw) == orjson.loads(raw)  # what every parser reads is unchanged
    assert rec.raw == raw


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    raw = (
        b'{"eventID":"o1","userIdentity":{"userName":"alice"},'
        b'"requestParameters":{"n":123456789012345678901234567890,"m":-9223372036854775809,"f":1.5}}'
    )
    out = Pseudonymizer(STANDARD_PROFILE, KEY).apply(Record.from_bytes(raw, ORIGIN))
    assert out.modified
    assert b'"n":123456789012345678901234567890,"m":-9223372036854775809,"f":1.5}' in out.raw
    assert out.document()["userIdentity"]["userName"] == Tokenizer(KEY).token("alice")
    # a rule on the big integer itself tokenizes its exact digits
    num = Pseudonymizer(profile(("requestParameters.n", "pseudonymize")), KEY)
    masked = num.apply(Record.from_bytes(raw, ORIGIN))
    assert orjson.loads(masked.raw)["requestParameters"]["n"] == Tokenizer(KEY).token(
        "123456789012345678901234567890"
    )
    # unchanged and written compactly: the very record, its bytes untouched
    plain = b'{"eventID":"o2","requestParameters":{"userName":null,"n":123456789012345678901234567890}}'
    rec = Record.from_bytes(plain, ORIGIN)
    assert Pseudonymizer(STANDARD_PROFILE, KEY).apply(rec) is rec


def test_unparseable_record_is_an_input_error_not_a_leak() -> None:
    raw = b'{"eventID":"x","sourceIPAddress":"203.0.113.9","n":1e400}'
    rec = Record.from_bytes(raw, ORIGIN)
    with pytest.raises(InputError, match="cannot parse") as info:
        Pseudonymizer(profile(("sourceIPAddress", "truncate")), None).apply(rec)
    assert "203.0.113.9" not in str(info.value)


# -- methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "v4", "v6", "expected"),
    [
        ("203.0.113.77", 24, 48, "203.0.113.0"),
        ("203.0.113.77", 16, 48, "203.0.0.0"),
        ("203.0.113.77", 20, 48, "203.0.112.0"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 48, "2001:db8:abcd::"),
        ("2001:DB8:ABCD:12::4", 24, 64, "2001:db8:abcd:12::"),
        ("::ffff:198.51.100.23", 24, 48, "::ffff:198.51.100.0"),
        ("225.01.00.16", 24, 48, "225.1.0.0"),  # leading zeros (in the corpus): truncated, no crash
        ("035.249.253.232", 24, 48, "35.249.253.0"),
        ("fe80::1%eth0", 24, 48, "fe80::"),
        # an address inside a longer value is truncated where it stands
        ("203.0.113.77/32", 24, 48, "203.0.113.0/24"),  # AuthorizeSecurityGroupIngress's cidrIp
        ("10.1.2.3/8", 24, 48, "10.0.0.0/8"),  # a shorter prefix is kept
        ("2001:db8::1/128", 24, 48, "2001:db8::/48"),
        ("203.0.113.77:443", 24, 48, "203.0.113.0:443"),
        ("[2001:db8::1]", 24, 48, "[2001:db8::]"),
        ("[2001:db8::1]:443", 24, 48, "[2001:db8::]:443"),
        (" 203.0.113.77 ", 24, 48, " 203.0.113.0 "),
        ("203.0.113.77, 10.0.0.1", 24, 48, "203.0.113.0, 10.0.0.0"),
        ("client 203.0.113.77 refused", 24, 48, "client 203.0.113.0 refused"),
        ("fe80::1%eth0, 203.0.113.9", 24, 128, "fe80::1%eth0, 203.0.113.0"),  # not a zone
        # IPv6 addresses that carry an IPv4 address keep no more of it than the IPv4 rule
        ("2002:cb00:714d::1", 24, 48, "2002:cb00:7100::"),  # 6to4 of 203.0.113.77
        ("2002:cb00:714d::1", 16, 128, "2002:cb00::"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", 24, 128, "2001:0:4136:e300::"),  # Teredo
        ("64:ff9b::203.0.113.77", 24, 128, "64:ff9b::cb00:7100"),  # NAT64
        ("::ffff:198.51.100.23", 24, 128, "::ffff:198.51.100.0"),
    ],
)
def test_truncate_ip(value: str, v4: int, v6: int, expected: str) -> None:
    assert truncate_ip(value, v4, v6) == expected
    if value.startswith("2002:"):
        network = ipaddress.IPv4Network((ipaddress.IPv6Address(expected).sixtofour, v4), strict=False)
        assert network.network_address == ipaddress.IPv6Address(expected).sixtofour


@pytest.mark.parametrize(
    "value",
    [
        "cloudtrail.amazonaws.com",
        "AWS Internal",
        "",
        "999.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "::g",
        "a" * 500,
        "12:30:45",
        "2026-03-02T10:00:00Z",
        "10.0.0.0/8",  # already no more than the prefix
    ],
)
def test_truncate_leaves_non_ip_values(value: str) -> None:
    assert truncate_ip(value) is None
    pz = Pseudonymizer(profile(("sourceIPAddress", "truncate")), None)
    rec = record(event(sourceIPAddress=value))
    assert pz.apply(rec) is rec


def test_truncate_non_string_values_unchanged() -> None:
    pz = Pseudonymizer(profile(("sourceIPAddress", "truncate")), None)
    for value in (None, 5, {"a": "cloudtrail.amazonaws.com"}, True):
        rec = record(event(sourceIPAddress=value))
        assert pz.apply(rec) is rec


def test_truncate_prefix_is_configurable_per_field() -> None:
    prof = PrivacyProfile(fields=[FieldRule(path="sourceIPAddress", method="truncate", ipv4_prefix=16)])
    out = Pseudonymizer(prof, None).apply(record(event()))
    assert out.document()["sourceIPAddress"] == "203.0.0.0"


def test_truncate_reaches_the_cidr_of_a_security_group_rule() -> None:
    ranges = {"items": [{"cidrIp": "203.0.113.77/32"}, {"cidrIp": "0.0.0.0/0"}]}
    doc = event(requestParameters={"ipPermissions": {"items": [{"ipRanges": ranges, "fromPort": 22}]}})
    pz = Pseudonymizer(profile(("requestParameters.ipPermissions", "truncate")), None)
    out = pz.apply(record(doc)).document()["requestParameters"]["ipPermissions"]["items"][0]
    assert out == {
        "ipRanges": {"items": [{"cidrIp": "203.0.113.0/24"}, {"cidrIp": "0.0.0.0/0"}]},
        "fromPort": 22,
    }


def test_drop_removes_the_field_and_list_elements() -> None:
    doc = event(resources=[{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}, {"ARN": "x"}])
    prof = profile(("userIdentity.accessKeyId", "drop"), ("resources.*.ARN", "drop"), ("tlsDetails", "drop"))
    out = Pseudonymizer(prof, None).apply(record(doc)).document()
    assert "accessKeyId" not in out["userIdentity"]
    assert "tlsDetails" not in out
    assert out["resources"] == [{"type": "AWS::S3::Bucket"}, {}]
    emptied = Pseudonymizer(profile(("resources.*", "drop")), None).apply(record(doc)).document()
    assert emptied["resources"] == []


def test_wildcards_and_containers() -> None:
    doc = event(
        requestParameters={"tags": [{"key": "owner", "value": "carol"}, {"key": "team", "value": "blue"}]},
        additionalEventData={"a": {"who": "dave"}, "b": {"who": "erin"}, "n": 42},
    )
    prof = profile(
        ("requestParameters.tags.*.value", "pseudonymize"),
        ("additionalEventData.*.who", "pseudonymize"),
        ("additionalEventData.n", "pseudonymize"),
    )
    out = Pseudonymizer(prof, KEY).apply(record(doc)).document()
    tok = Tokenizer(KEY)
    assert [t["value"] for t in out["requestParameters"]["tags"]] == [tok.token("carol"), tok.token("blue")]
    assert out["additionalEventData"]["a"]["who"] == tok.token("dave")
    assert out["additionalEventData"]["n"] == tok.token("42")
    whole = Pseudonymizer(profile(("requestParameters", "pseudonymize")), KEY).apply(record(doc)).document()
    assert whole["requestParameters"]["tags"][0] == {"key": tok.token("owner"), "value": tok.token("carol")}


@pytest.mark.parametrize(
    ("value", "expected_shape"),
    [
        ("arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/{alice}"),
        ("arn:aws:iam::111122223333:user/dev/ops/alice", "arn:aws:iam::111122223333:user/dev/ops/{alice}"),
        (
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_1a2b/Alice@Example.com",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_1a2b/{alice@example.com}",
        ),
        ("arn:aws:sts::111122223333:federated-user/bob", "arn:aws:sts::111122223333:federated-user/{bob}"),
        ("arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:root"),
        ("arn:aws:iam::111122223333:role/Deployer", "arn:aws:iam::111122223333:role/Deployer"),
        ("AROAEXAMPLEROLE00001:alice", "AROAEXAMPLEROLE00001:{alice}"),
        ("AIDAEXAMPLEUSER00001", "{AIDAEXAMPLEUSER00001}"),
        ("arn:broken", "{arn:broken}"),
    ],
)
def test_principal_tokenizes_only_the_person(value: str, expected_shape: str) -> None:
    tok = Tokenizer(KEY)
    expected = re.sub(r"\{([^}]*)\}", lambda m: tok.token(m.group(1)), expected_shape)
    pz = Pseudonymizer(profile(("userIdentity.arn", "principal")), KEY)
    rec = record(event(userIdentity={"type": "IAMUser", "arn": value}))
    assert pz.apply(rec).document()["userIdentity"]["arn"] == expected


def test_principal_and_username_correlate() -> None:
    out = Pseudonymizer(STANDARD_PROFILE, KEY).apply(record(event())).document()
    ident = out["userIdentity"]
    assert ident["arn"] == f"arn:aws:iam::111122223333:user/{ident['userName']}"


def test_emails_inside_strings_of_chosen_subtrees() -> None:
    doc = event(
        userIdentity={
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:Alice@Example.com",
            "arn": "arn:aws:sts::111122223333:assumed-role/SSO/Alice@Example.com",
        },
        requestParameters={"note": "ask bob@corp.example.org or carol@corp.example.org", "list": ["x@y.io"]},
        responseElements={"contact": "dave@example.com"},
    )
    pz = Pseudonymizer(PrivacyProfile(emails=["userIdentity", "requestParameters"]), KEY)
    out = pz.apply(record(doc)).document()
    tok = Tokenizer(KEY)
    alice = tok.token("alice@example.com")
    assert out["userIdentity"]["principalId"] == f"AROAEXAMPLE:{alice}"
    assert out["userIdentity"]["arn"].endswith(f"/SSO/{alice}")
    assert out["requestParameters"]["note"] == (
        f"ask {tok.token('bob@corp.example.org')} or {tok.token('carol@corp.example.org')}"
    )
    assert out["requestParameters"]["list"] == [tok.token("x@y.io")]
    assert out["responseElements"] == {"contact": "dave@example.com"}  # not a chosen subtree
    assert pz.stats()["userIdentity:emails"] == 2


@pytest.mark.parametrize(
    ("text", "emails"),
    [
        ("contact jürgen@example.com now", ["jürgen@example.com"]),  # no "jü" left before the token
        ("alice@müller.de", ["alice@müller.de"]),
        ("ivan@пример.рф", ["ivan@пример.рф"]),
        ('"carol"@example.com', ['"carol"@example.com']),
        ("dave@[10.0.0.1] or erin@[IPv6:2001:db8::1]", ["dave@[10.0.0.1]", "erin@[IPv6:2001:db8::1]"]),
        ("john_doe@example.com.", ["john_doe@example.com"]),
        ("o'brien@example.com and 'eve@example.org'", ["o'brien@example.com", "eve@example.org"]),
        ("bob@localhost", []),  # a host-local mailbox: documented as not matched
        ("pip install name@latest", []),
    ],
)
def test_email_scan_takes_the_whole_address(text: str, emails: list[str]) -> None:
    tok = Tokenizer(KEY)
    pz = Pseudonymizer(PrivacyProfile(emails=["requestParameters"]), KEY)
    out = pz.apply(record(event(requestParameters={"note": text}))).document()["requestParameters"]["note"]
    expected = text
    for address in emails:
        expected = expected.replace(address, tok.token(address))
    assert out == expected


def test_emails_anywhere_with_star() -> None:
    doc = event(serviceEventDetails={"deep": {"list": [{"mail": "eve@example.net"}]}})
    out = Pseudonymizer(PrivacyProfile(emails=["*"]), KEY).apply(record(doc)).document()
    assert out["serviceEventDetails"]["deep"]["list"][0]["mail"] == Tokenizer(KEY).token("eve@example.net")


def test_standard_profile_leaves_no_name_it_tokenizes_elsewhere() -> None:
    """The caller, its session issuer, STS's sessions and federated users, and error messages."""
    doc = event(
        eventName="AssumeRole",
        userIdentity={
            "type": "FederatedUser",
            "principalId": "111122223333:alice-fed",
            "arn": "arn:aws:sts::111122223333:federated-user/alice-fed",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "IAMUser",
                    "principalId": "AIDAEXAMPLEUSER00001",
                    "arn": "arn:aws:iam::111122223333:user/alice",
                    "accountId": "111122223333",
                    "userName": "alice",
                },
                "sourceIdentity": "alice-source",
            },
        },
        userAgent="custom-tool/1.0 (contact alice@example.com)",
        errorMessage="User: arn:aws:sts::111122223333:assumed-role/Admin/alice-session is not authorized "
        "to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/Admin; ask alice@example.com",
        requestParameters={"roleSessionName": "alice-session", "sourceIdentity": "alice-source"},
        responseElements={
            "accessKey": {"userName": "alice", "status": "Active"},
            "loginProfile": {"userName": "alice"},
            "assumedRoleUser": {
                "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice-session",
                "assumedRoleId": "AROAEXAMPLEROLE00001:alice-session",
            },
            "federatedUser": {
                "arn": "arn:aws:sts::111122223333:federated-user/alice-fed",
                "federatedUserId": "111122223333:alice-fed",
            },
        },
    )
    out = Pseudonymizer(STANDARD_PROFILE, KEY).apply(record(doc))
    assert b"alice" not in out.raw
    tok = Tokenizer(KEY)
    alice, session, fed = tok.token("alice"), tok.token("alice-session"), tok.token("alice-fed")
    d = out.document()
    assert d["errorMessage"] == (
        f"User: arn:aws:sts::111122223333:assumed-role/Admin/{session} is not authorized "
        f"to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/Admin; "
        f"ask {tok.token('alice@example.com')}"
    )
    assert d["userAgent"] == f"custom-tool/1.0 (contact {tok.token('alice@example.com')})"
    issuer = d["userIdentity"]["sessionContext"]["sessionIssuer"]
    assert issuer["userName"] == alice
    assert issuer["arn"] == f"arn:aws:iam::111122223333:user/{alice}"
    assert issuer["principalId"] == tok.token("AIDAEXAMPLEUSER00001")
    assert d["requestParameters"] == {"roleSessionName": session, "sourceIdentity": tok.token("alice-source")}
    assert d["responseElements"] == {
        "accessKey": {"userName": alice, "status": "Active"},
        "loginProfile": {"userName": alice},
        "assumedRoleUser": {
            "arn": f"arn:aws:sts::111122223333:assumed-role/Admin/{session}",
            "assumedRoleId": f"AROAEXAMPLEROLE00001:{session}",
        },
        "federatedUser": {
            "arn": f"arn:aws:sts::111122223333:federated-user/{fed}",
            "federatedUserId": f"111122223333:{fed}",
        },
    }


@pytest.mark.parametrize(
    ("event_name", "identity", "response"),
    [
        (
            "AssumeRoleWithSAML",
            {"type": "SAMLUser", "principalId": "Qx5Y1vDvK3=:carol", "userName": "carol"},
            {
                "subject": "carol",
                "subjectType": "persistent",
                "sourceIdentity": "carol",
                "assumedRoleUser": {"arn": "arn:aws:sts::111122223333:assumed-role/SSO/carol"},
            },
        ),
        (
            "AssumeRoleWithWebIdentity",
            {"type": "WebIdentityUser", "principalId": "accounts.google.com:carol", "userName": "carol"},
            {"subjectFromWebIdentityToken": "carol", "provider": "accounts.google.com"},
        ),
    ],
)
def test_standard_profile_tokenizes_the_saml_and_web_identity_subject_as_the_caller(
    event_name: str, identity: dict[str, Any], response: dict[str, Any]
) -> None:
    """userIdentity.userName was a token while responseElements.subject (or
    subjectFromWebIdentityToken) kept the same name in clear beside it."""
    doc = event(eventName=event_name, userIdentity=identity, responseElements=response)
    out = Pseudonymizer(STANDARD_PROFILE, KEY).apply(record(doc))
    assert b"carol" not in out.raw
    d = out.document()
    carol = d["userIdentity"]["userName"]
    assert carol == Tokenizer(KEY).token("carol")
    assert d["userIdentity"]["principalId"].endswith(f":{carol}")
    for name in ("subject", "subjectFromWebIdentityToken", "sourceIdentity"):
        if name in response:
            assert d["responseElements"][name] == carol  # the same person, the same token
    assert d["responseElements"].get("provider", "accounts.google.com") == "accounts.google.com"


def test_standard_profile_tokenizes_the_identity_center_user_and_keeps_access_key_ids() -> None:
    """onBehalfOf.userId (the IAM Identity Center user a session acts for) went out in clear."""
    user = "906771ac70-9f02a7b9-7ed6-47ff-8d9d-7a7f4c1a55a6"
    identity = {
        **SAMPLE_EVENTS[0]["userIdentity"],
        "onBehalfOf": {
            "userId": user,
            "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1",
        },
    }
    d = Pseudonymizer(STANDARD_PROFILE, KEY).apply(record(event(userIdentity=identity))).document()
    assert d["userIdentity"]["onBehalfOf"] == {
        "userId": Tokenizer(KEY).token(user),
        "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1",
    }
    assert d["userIdentity"]["accessKeyId"] == SAMPLE_EVENTS[0]["userIdentity"]["accessKeyId"]


@pytest.mark.parametrize(
    ("text", "expected_shape"),
    [
        (
            "User: arn:aws:iam::1:user/ops/bob is not authorized",
            "User: arn:aws:iam::1:user/ops/{bob} is not authorized",
        ),
        ("denied for arn:aws:iam::1:user/bob.", "denied for arn:aws:iam::1:user/{bob}."),
        ("(arn:aws:sts::1:federated-user/bob), again", "(arn:aws:sts::1:federated-user/{bob}), again"),
        ("on resource: arn:aws:iam::1:role/Admin", "on resource: arn:aws:iam::1:role/Admin"),
        ("Unknown trail: arn:aws:cloudtrail:us-east-1:1:trail/t for the user: 1", None),
        ("Rate exceeded", None),
        ("Learn:more about arn: values", None),
    ],
)
def test_arns_method_tokenizes_the_person_in_every_arn_of_a_text(
    text: str, expected_shape: str | None
) -> None:
    tok = Tokenizer(KEY)
    expected = (
        text
        if expected_shape is None
        else re.sub(r"\{([^}]*)\}", lambda m: tok.token(m.group(1)), expected_shape)
    )
    pz = Pseudonymizer(profile(("errorMessage", "arns")), KEY)
    assert pz.apply(record(event(errorMessage=text))).document()["errorMessage"] == expected


def test_principal_keeps_a_roles_bare_unique_id() -> None:
    pz = Pseudonymizer(profile(("userIdentity.principalId", "principal")), KEY)
    rec = record(event(userIdentity={"type": "Role", "principalId": "AROAEXAMPLEROLE00001"}))
    assert pz.apply(rec) is rec


def test_stats_count_changes_per_rule() -> None:
    pz = Pseudonymizer(
        profile(("sourceIPAddress", "truncate"), ("userIdentity.userName", "pseudonymize")), KEY
    )
    for i in range(3):
        pz.apply(record(event(eventID=str(i))))
    assert pz.stats() == {
        "records_changed": 3,
        "sourceIPAddress:truncate": 3,
        "userIdentity.userName:pseudonymize": 3,
    }


# -- configuration ----------------------------------------------------------------------------


def test_unkeyed_hashing_is_refused_with_the_reason() -> None:
    for method in ("hash", "sha256", "MD5"):
        with pytest.raises(ValueError, match="IPv4") as info:
            FieldRule(path="sourceIPAddress", method=method)
        assert "HMAC" in str(info.value)


def test_pseudonymize_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a secret key"):
        PrivacyConfig(default="standard")
    with pytest.raises(ConfigError, match="no key"):
        Pseudonymizer(profile(("sourceIPAddress", "pseudonymize")), None)
    # truncation and drop need no key
    PrivacyConfig(default="ip", profiles={"ip": profile(("sourceIPAddress", "truncate"))})


def test_unknown_method_path_and_profile_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        FieldRule(path="sourceIPAddress", method="encrypt")
    with pytest.raises(ValueError, match="empty segment"):
        FieldRule(path="userIdentity..userName", method="drop")
    with pytest.raises(ValueError, match="no profile named 'strict'"):
        PrivacyConfig(key_env="K", sinks={"siem": "strict"})
    with pytest.raises(ValueError, match="more than one rule"):
        profile(("sourceIPAddress", "drop"), ("sourceIPAddress", "truncate"))
    with pytest.raises(ValueError, match="no sink gets a profile"):
        PrivacyConfig(key_env="K", profiles={"p": profile(("sourceIPAddress", "drop"))})
    with pytest.raises(ValueError, match="one key source"):
        PrivacyConfig(key_env="K", key_file=Path("k"), default="standard")


def test_profile_for_each_sink() -> None:
    cfg = PrivacyConfig.validate(
        {
            "key_env": "K",
            "default": "standard",
            "sinks": {"archive": "none", "siem-us": "strict"},
            "profiles": {"strict": {"fields": [{"path": "sourceIPAddress", "method": "drop"}]}},
        }
    )
    assert cfg.profile_for("siem-us") == "strict"
    assert cfg.profile_for("archive") is None
    assert cfg.profile_for("splunk") == "standard"  # any other sink, also ones added later
    only_one = PrivacyConfig(key_env="K", sinks={"siem-us": "standard"})
    assert only_one.profile_for("siem-us") == "standard"
    assert only_one.profile_for("splunk") is None
    with pytest.raises(ConfigError, match="no sink named 'siem-eu'"):
        PrivacyConfig(key_env="K", sinks={"siem-eu": "standard"}).check_sinks(["siem-us", "archive"])


def test_build_pseudonymizers_per_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_KEY", "k3y-material-that-is-long-enough-0123456789")
    cfg = PrivacyConfig(
        key_env="TR_KEY",
        sinks={"siem-us": "standard", "archive": "none", "splunk": "ip"},
        profiles={"ip": profile(("sourceIPAddress", "truncate"))},
    )
    built = build_pseudonymizers(cfg, ["siem-us", "archive", "splunk"])
    assert set(built) == {"siem-us", "splunk"}
    shared = record(event())
    us = built["siem-us"].apply(shared)
    sp = built["splunk"].apply(shared)
    assert us.document()["userIdentity"]["userName"] != "alice"
    assert sp.document()["userIdentity"]["userName"] == "alice"
    assert sp.document()["sourceIPAddress"] == us.document()["sourceIPAddress"] == "203.0.113.0"
    assert shared.document()["sourceIPAddress"] == "203.0.113.7"
    with pytest.raises(ConfigError, match="no sink named"):
        build_pseudonymizers(cfg, ["siem-us"])


def test_no_key_is_loaded_when_no_sink_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TR_UNSET", raising=False)
    cfg = PrivacyConfig(
        key_env="TR_UNSET", sinks={"a": "ip"}, profiles={"ip": profile(("sourceIPAddress", "truncate"))}
    )
    assert set(build_pseudonymizers(cfg, ["a", "b"])) == {"a"}


def test_reprs_hold_no_key() -> None:
    secret = b"a-very-secret-key-material-0123456789XYZ"
    key = Key(secret, "environment variable K")
    pz = Pseudonymizer(STANDARD_PROFILE, key, name="standard")
    for text in (repr(key), str(key), repr(Tokenizer(key)), repr(pz)):
        assert secret.decode() not in text
        assert "very-secret" not in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


# -- the real corpus --------------------------------------------------------------------------


_NAMES = [
    "userIdentity.sessionContext.sessionIssuer.userName",
    "requestParameters.roleSessionName",
    "responseElements.accessKey.userName",
    "responseElements.loginProfile.userName",
    "responseElements.assumedRoleUser.arn",
    "responseElements.assumedRoleUser.assumedRoleId",
    "responseElements.federatedUser.arn",
    "responseElements.federatedUser.federatedUserId",
]
_PERSON_ARN = re.compile(r"arn:aws[\w-]*:(?:iam|sts)::\d*:(?:user|assumed-role/[^/\s]+|federated-user)/\S+")


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def test_corpus_wide_standard_profile(corpus: Path) -> None:
    records = load_records(corpus / "cloudtrail")
    pz = Pseudonymizer(STANDARD_PROFILE, KEY)
    ip_left = names_seen = arns_seen = 0
    for rec in records:
        before = rec.raw
        out = pz.apply(rec)
        assert rec.raw == before
        if out is rec:
            assert not out.modified
            continue
        doc = out.document()
        ip = doc.get("sourceIPAddress")
        if isinstance(ip, str) and truncate_ip(ip) is not None:
            ip_left += truncate_ip(ip) != ip
        name = (doc.get("userIdentity") or {}).get("userName")
        if isinstance(name, str):
            assert TOKEN_PATTERN.fullmatch(name)
        assert "@" not in orjson.dumps(doc.get("userIdentity")).decode()
        for path in _NAMES:
            value = _get(doc, path)
            if isinstance(value, str):
                assert TOKEN_PATTERN.fullmatch(value.rpartition("/")[2].rpartition(":")[2]), (path, value)
                names_seen += 1
        for arn in _PERSON_ARN.findall(str(doc.get("errorMessage", ""))):
            assert TOKEN_PATTERN.fullmatch(arn.rpartition("/")[2].rstrip(".,")), arn
            arns_seen += 1
    assert ip_left == 0
    assert names_seen > 250
    assert arns_seen > 60  # the callers named in "User: arn:... is not authorized" messages
    stats = pz.stats()
    assert stats["records_changed"] > len(records) * 0.9
    assert stats["sourceIPAddress:truncate"] > 2500


def test_documented_example_config_is_valid() -> None:
    import tomllib

    import trailrelay.privacy.config as module

    text = (module.__doc__ or "").split("pseudonyms::\n\n", 1)[1].split("\n\nThe built-in", 1)[0]
    table = tomllib.loads("\n".join(line[4:] for line in text.splitlines()))["privacy"]
    cfg = PrivacyConfig.validate(table)
    assert cfg.profile_for("siem-us") == "outside-eu"
    assert cfg.profile_for("splunk-eu") is None
