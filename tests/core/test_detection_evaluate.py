"""The in-stream Sigma evaluator: matching semantics, the candidate index, errors, rule loading."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.detection.loader import RuleError, pack_sources
from trailrelay.errors import ConfigError
from trailrelay.record import Origin, Record, decode_routing

ORIGIN = Origin("file", "test://detection")

BASE: dict[str, Any] = {
    "eventVersion": "1.09",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333",
        "userName": "alice",
        "sessionContext": {"attributes": {"mfaAuthenticated": "false"}},
    },
    "eventTime": "2026-03-02T10:00:00Z",
    "eventSource": "cloudtrail.amazonaws.com",
    "eventName": "StopLogging",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "203.0.113.7",
    "userAgent": "aws-cli/2.15.0",
    "requestParameters": {"name": "org-trail", "count": 7, "enable": False},
    "responseElements": None,
    "eventID": "00000000-0000-4000-8000-000000000001",
    "readOnly": False,
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
}


def event(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        path = key.split("__")
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if value is _DROP:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return doc


_DROP = object()


def rule_yaml(detection: str, *, title: str = "Test rule", rid: str | None = None, extra: str = "") -> str:
    rid = rid or "11111111-1111-4111-8111-111111111111"
    return (
        f"title: {title}\nid: {rid}\nlevel: high\n"
        "tags: [attack.defense-evasion, attack.t1562.008]\n"
        "logsource: {product: aws, service: cloudtrail}\n"
        f"{extra}detection:\n{textwrap.indent(textwrap.dedent(detection).strip(), '    ')}\n"
    )


def make_tagger(tmp_path: Path, *docs: str, **kwargs: Any) -> SigmaTagger:
    folder = tmp_path / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(docs):
        (folder / f"rule{i}.yml").write_text(text, encoding="utf-8")
    return SigmaTagger(DetectionConfig(rules=[folder], pack=False), **kwargs)


def matches(tagger: SigmaTagger, doc: dict[str, Any]) -> list[str]:
    record = tagger(Record.from_document(doc, ORIGIN))
    return [t.title for t in record.tags]


def check(tmp_path: Path, detection: str, cases: list[tuple[dict[str, Any], bool]]) -> None:
    tagger = make_tagger(tmp_path, rule_yaml(detection))
    for doc, expected in cases:
        assert bool(matches(tagger, doc)) is expected, (detection, doc.get("requestParameters"), expected)


# --- value semantics ------------------------------------------------------------------------


def test_plain_strings_match_case_insensitively_and_lists_are_or(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            eventName: [stoplogging, DeleteTrail]
        condition: sel
        """,
        [(event(), True), (event(eventName="DeleteTrail"), True), (event(eventName="StartLogging"), False)],
    )


def test_value_lists_of_routing_fields_are_or_for_every_modifier(tmp_path: Path) -> None:
    """Lists on routing fields are tested in one step; each value still counts on its own."""
    check(
        tmp_path,
        """
        sel:
            errorCode|contains: [accessdenied, Unauthorized]
            awsRegion|endswith: ['-3', WEST-1]
            userIdentity.arn|startswith: ['arn:aws:sts::', 'ARN:AWS:IAM::']
            sourceIPAddress|cased: [10.0.0.1, 203.0.113.7]
            eventName: [deletetrail, StopLogging]
        condition: sel
        """,
        [
            (event(errorCode="Client.UnauthorizedOperation"), True),
            (event(errorCode="AccessDeniedException"), True),
            (event(errorCode="ThrottlingException"), False),
            (event(), False),  # no errorCode at all
            (event(errorCode="AccessDenied", awsRegion="ap-southeast-3"), True),
            (event(errorCode="AccessDenied", awsRegion="eu-west-2"), False),
            (event(errorCode="AccessDenied", userIdentity__arn="arn:aws:sts::1:assumed-role/r/s"), True),
            (event(errorCode="AccessDenied", userIdentity__arn="arn:aws:s3:::bucket"), False),
            (event(errorCode="AccessDenied", sourceIPAddress="10.0.0.1"), True),
            (event(errorCode="AccessDenied", sourceIPAddress="10.0.0.10"), False),
            (event(errorCode="AccessDenied", eventName="DELETETRAIL"), True),
            (event(errorCode="AccessDenied", eventName="StartLogging"), False),
        ],
    )


def test_an_or_across_routing_fields_tests_each_field(tmp_path: Path) -> None:
    """Merging value lists stays per field: a list of maps ORs leaves of two fields; both are read."""
    check(
        tmp_path,
        """
        sel:
            - eventName: DeleteTrail
            - errorCode: TrailNotFoundException
            - eventName: UpdateTrail
        condition: sel
        """,
        [
            (event(eventName="DeleteTrail"), True),
            (event(errorCode="TrailNotFoundException"), True),
            (event(eventName="StartLogging"), False),
        ],
    )


def test_wildcards_and_string_modifiers(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            userAgent|startswith: AWS-CLI/
            sourceIPAddress: '203.0.113.?'
            userIdentity.arn|endswith: ':USER/ALICE'
            requestParameters.name|contains: g-tr
            awsRegion: 'eu-*-1'
        condition: sel
        """,
        [
            (event(), True),
            (event(sourceIPAddress="203.0.113.77"), False),  # ? is exactly one character
            (event(userAgent="Boto3 aws-cli/2"), False),
            (event(awsRegion="eu-west-2"), False),
        ],
    )


def test_cased_modifier_is_exact(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            eventName|cased: StopLogging
        condition: sel
        """,
        [(event(), True), (event(eventName="stoplogging"), False)],
    )


def test_all_modifier_requires_every_value(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            userAgent|contains|all: [aws-cli, '2.15']
        condition: sel
        """,
        [(event(), True), (event(userAgent="aws-cli/1.0"), False)],
    )


def test_regular_expressions_search_with_flags(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            userIdentity.arn|re|i: 'USER/AL[a-z]+$'
        condition: sel
        """,
        [(event(), True), (event(userIdentity__arn="arn:aws:iam::1:role/alice"), False)],
    )


def test_cidr_matches_v4_and_v6_and_ignores_invalid_addresses(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            sourceIPAddress|cidr: [203.0.113.0/24, '2001:db8::/32']
        condition: sel
        """,
        [
            (event(), True),
            (event(sourceIPAddress="2001:db8::1"), True),
            (event(sourceIPAddress="198.51.100.1"), False),
            (event(sourceIPAddress="225.01.00.16"), False),  # leading zeros (seen in the corpus)
            (event(sourceIPAddress="AWS Internal"), False),
        ],
    )


def test_null_means_absent_or_null(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            errorCode: null
            responseElements: null
        condition: sel
        """,
        [
            (event(), True),
            (event(errorCode="AccessDenied"), False),
            (event(responseElements={"x": 1}), False),
        ],
    )


def test_exists_modifier(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        has:
            requestParameters.name|exists: true
        hasnt:
            requestParameters.bucketName|exists: false
        condition: has and hasnt
        """,
        [
            (event(), True),
            (event(requestParameters={"bucketName": "b"}), False),
            (event(requestParameters={"name": None}), False),
        ],
    )


def test_booleans_match_json_booleans_and_their_text(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            requestParameters.enable: false
        condition: sel
        """,
        [
            (event(), True),
            (event(requestParameters={"enable": "false"}), True),
            (event(requestParameters={"enable": True}), False),
            (event(requestParameters={"enable": 0}), False),
            (event(requestParameters={}), False),
        ],
    )


def test_string_false_matches_boolean_false(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        sel:
            requestParameters.enable: 'false'
        condition: sel
        """,
        [(event(), True), (event(requestParameters={"enable": True}), False)],
    )


def test_numbers_and_comparisons(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        eq:
            requestParameters.count: 7
        gt:
            requestParameters.count|gt: 6
        lte:
            requestParameters.count|lte: 7
        condition: eq and gt and lte
        """,
        [
            (event(), True),
            (event(requestParameters={"count": "7"}), True),
            (event(requestParameters={"count": 8}), False),
            (event(requestParameters={"count": True}), False),
            (event(requestParameters={"count": "seven"}), False),
        ],
    )


def test_field_reference(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        self_service:
            requestParameters.userName|fieldref: userIdentity.userName
        condition: not self_service
        """,
        [
            (event(requestParameters={"userName": "bob"}), True),
            (event(requestParameters={"userName": "ALICE"}), False),
        ],
    )


def test_paths_continue_into_lists(tmp_path: Path) -> None:
    selectors = [
        {"readWriteType": "All", "includeManagementEvents": True},
        {"readWriteType": "ReadOnly", "includeManagementEvents": False, "excludeManagementEventSources": []},
    ]
    check(
        tmp_path,
        """
        sel:
            requestParameters.eventSelectors.readWriteType: ReadOnly
        condition: sel
        """,
        [
            (event(requestParameters={"eventSelectors": selectors}), True),
            (event(requestParameters={"eventSelectors": selectors[:1]}), False),
        ],
    )
    tagger = make_tagger(
        tmp_path,
        rule_yaml(
            """
            sel:
                requestParameters.eventSelectors.excludeManagementEventSources|exists: true
            condition: sel
            """,
            rid="22222222-2222-4222-8222-222222222222",
        ),
    )
    assert not matches(tagger, event(requestParameters={"eventSelectors": selectors}))  # [] holds no value
    selectors[1]["excludeManagementEventSources"] = ["kms.amazonaws.com"]
    assert matches(tagger, event(requestParameters={"eventSelectors": selectors}))


def test_dotted_top_level_key(tmp_path: Path) -> None:
    doc = event()
    doc["requestParameters.name"] = "flat"
    check(
        tmp_path,
        """
        sel:
            requestParameters.name: flat
        condition: sel
        """,
        [(doc, True), (event(), False)],
    )


def test_keywords_search_the_raw_event(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        keywords:
            - ORG-TRAIL
        condition: keywords
        """,
        [(event(), True), (event(requestParameters={"name": "other"}), False)],
    )


def test_condition_forms(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        selection_source:
            eventSource: cloudtrail.amazonaws.com
        selection_name:
            eventName: [StopLogging, DeleteTrail]
        filter_automation:
            userIdentity.userName: terraform
        condition: all of selection_* and not 1 of filter_*
        """,
        [
            (event(), True),
            (event(userIdentity__userName="terraform"), False),
            (event(eventSource="ec2.amazonaws.com"), False),
        ],
    )
    tagger = make_tagger(
        tmp_path,
        rule_yaml(
            """
            a:
                eventName: StopLogging
            b:
                eventName: DeleteTrail
            condition:
                - a
                - b
            """,
            rid="33333333-3333-4333-8333-333333333333",
        ),
    )
    assert matches(tagger, event()) and matches(tagger, event(eventName="DeleteTrail"))
    assert not matches(tagger, event(eventName="UpdateTrail"))


def test_tag_carries_id_title_level_and_technique(tmp_path: Path) -> None:
    tagger = make_tagger(
        tmp_path,
        rule_yaml("sel:\n    eventName: StopLogging\ncondition: sel", title="Stop"),
        "title: Unleveled\nname: my_rule\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection:\n    sel:\n        eventName: StopLogging\n    condition: sel\n",
    )
    record = tagger(Record.from_document(event(), ORIGIN))
    by_title = {t.title: t for t in record.tags}
    stop = by_title["Stop"]
    assert (stop.rule_id, stop.severity, stop.technique) == (
        "11111111-1111-4111-8111-111111111111",
        "high",
        "T1562.008",
    )
    unleveled = by_title["Unleveled"]
    assert (unleveled.rule_id, unleveled.severity, unleveled.technique) == ("my_rule", "medium", None)
    assert tagger.tagged == 1 and tagger.matches["my_rule"] == 1


# --- index and robustness -------------------------------------------------------------------


def _unparseable(**routing: Any) -> Record:
    """A record whose routing fields decode but whose full parse fails."""
    raw = b'{"eventSource":"%s","eventName":"%s","eventID":"bad-1"' % (
        routing.get("source", "iam.amazonaws.com").encode(),
        routing.get("name", "CreateAccessKey").encode(),
    )
    good = raw + b"}"
    return Record(raw, decode_routing(good), ORIGIN)


def test_rules_are_only_evaluated_for_their_event_names(tmp_path: Path) -> None:
    tagger = make_tagger(
        tmp_path,
        rule_yaml(
            """
            sel:
                eventName: CreateAccessKey
                requestParameters.userName: bob
            condition: sel
            """
        ),
    )
    other = _unparseable(name="ListUsers")
    tagger(other)
    assert tagger.errors == 0 and not other.tags  # never parsed: the index skipped the rule
    candidate = _unparseable(name="CreateAccessKey")
    tagger(candidate)  # evaluated: the full parse fails, the record goes on untagged
    assert tagger.errors == 1 and not candidate.tags


def test_routing_only_rules_never_parse_the_event(tmp_path: Path) -> None:
    tagger = make_tagger(
        tmp_path,
        rule_yaml(
            """
            sel:
                eventSource: iam.amazonaws.com
                eventName|startswith: Create
                errorCode: null
            condition: sel
            """
        ),
    )
    record = _unparseable(name="CreateAccessKey")
    tagger(record)
    assert tagger.errors == 0 and [t.title for t in record.tags] == ["Test rule"]


def test_rule_with_error_code_condition_skips_successful_calls(tmp_path: Path) -> None:
    tagger = make_tagger(
        tmp_path,
        rule_yaml(
            """
            sel:
                errorCode|contains: AccessDenied
                requestParameters.name: org-trail
            condition: sel
            """
        ),
    )
    ok = _unparseable(name="StopLogging")
    tagger(ok)
    assert tagger.errors == 0
    assert tagger.candidates(ok) == []  # no errorCode: never a candidate
    assert [r.title for r in tagger.candidates(Record.from_document(event(errorCode="x"), ORIGIN))] == [
        "Test rule"
    ]
    assert matches(tagger, event(errorCode="AccessDenied"))


def test_pack_index_selects_few_rules() -> None:
    tagger = SigmaTagger()

    def chosen(**changes: Any) -> list[str]:
        return sorted(r.title for r in tagger.candidates(Record.from_document(event(**changes), ORIGIN)))

    assert chosen() == ["AWS CloudTrail Logging Stopped"]
    assert chosen(eventSource="ec2.amazonaws.com", eventName="DescribeInstances") == []
    assert chosen(eventName="STOPLOGGING", eventSource="CloudTrail.amazonaws.com") == [
        "AWS CloudTrail Logging Stopped"
    ]
    assert chosen(
        eventSource="ec2.amazonaws.com", eventName="GetPasswordData", errorCode="Client.UnauthorizedOperation"
    ) == ["AWS API Call Denied"]
    assert chosen(eventSource="s3.amazonaws.com", eventName="PutBucketPublicAccessBlock") == [
        "AWS S3 Bucket Public Access Block Removed Or Relaxed"
    ]


# --- loading --------------------------------------------------------------------------------


def test_unsupported_features_are_refused_with_the_rule_named(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rule0\.yml: rule 'Test rule' uses placeholders"):
        make_tagger(tmp_path, rule_yaml("sel:\n    userIdentity.userName|expand: '%admins%'\ncondition: sel"))


def test_unsupported_correlations_are_refused(tmp_path: Path) -> None:
    base = rule_yaml("sel:\n    eventName: StopLogging\ncondition: sel", extra="name: base_rule\n")
    temporal = (
        "title: Temporal\nid: 44444444-4444-4444-8444-444444444444\n"
        "correlation:\n  type: temporal\n  rules: [base_rule]\n  group-by: [userIdentity.arn]\n"
        "  timespan: 5m\n"
    )
    with pytest.raises(RuleError, match="type temporal is not supported"):
        make_tagger(tmp_path / "one", base + "---\n" + temporal)
    fewer = (
        "title: Fewer\nid: 55555555-5555-4555-8555-555555555555\n"
        "correlation:\n  type: event_count\n  rules: [base_rule]\n  group-by: [userIdentity.arn]\n"
        "  timespan: 5m\n  condition: {lt: 3}\n"
    )
    with pytest.raises(RuleError, match="only 'gt' and 'gte'"):
        make_tagger(tmp_path / "two", base + "---\n" + fewer)


def test_bad_rule_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rule0\.yml: cannot be parsed") as info:
        make_tagger(tmp_path / "one", "title: [unclosed\n")
    assert "\n" not in str(info.value)  # YAML's own message spans lines
    with pytest.raises(RuleError, match=r"rule0\.yml: not a valid Sigma rule"):
        make_tagger(tmp_path / "two", "title: no detection\n")


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    one = rule_yaml("sel:\n    eventName: StopLogging\ncondition: sel")
    with pytest.raises(RuleError, match="defined twice"):
        make_tagger(tmp_path, one, one)


def test_rules_for_other_log_sources_are_skipped_and_listed(tmp_path: Path) -> None:
    windows = (
        "title: Windows rule\nid: 66666666-6666-4666-8666-666666666666\n"
        "logsource: {product: windows, category: process_creation}\n"
        "detection:\n    sel:\n        Image|endswith: '\\\\cmd.exe'\n    condition: sel\n"
    )
    tagger = make_tagger(tmp_path, windows, rule_yaml("sel:\n    eventName: StopLogging\ncondition: sel"))
    assert [r.title for r in tagger.rules] == ["Test rule"]
    skipped = [
        (f"{tmp_path / 'rules' / 'rule0.yml'}: Windows rule", "logsource is windows/None, not aws/cloudtrail")
    ]
    assert tagger.rule_set.skipped == tagger.plan.skipped == skipped  # what `rules list` prints


def test_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SigmaTagger(DetectionConfig(rules=[tmp_path / "missing"], pack=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yml or \*\.yaml rule files"):
        SigmaTagger(DetectionConfig(rules=[tmp_path / "empty"], pack=False))
    rule_file = tmp_path / "one.yaml"
    rule_file.write_text(rule_yaml("sel:\n    eventName: StopLogging\ncondition: sel"), encoding="utf-8")
    tagger = SigmaTagger(DetectionConfig(rules=[Path("one.yaml")], pack=False), base_dir=tmp_path)
    assert [r.title for r in tagger.rules] == ["Test rule"]


def test_config_has_exactly_rules_and_pack() -> None:
    assert set(DetectionConfig.__struct_fields__) == {"rules", "pack"}
    assert DetectionConfig().pack is True and DetectionConfig().rules == []
    with pytest.raises(ConfigError, match="packs: unknown key"):
        DetectionConfig.validate({"rules": [], "packs": True}, where="detection")


def test_pack_can_be_turned_off_and_extended(tmp_path: Path) -> None:
    assert (
        len(SigmaTagger().rules) == len(SigmaTagger(DetectionConfig(pack=True)).rules) >= len(pack_sources())
    )
    own = make_tagger(tmp_path, rule_yaml("sel:\n    eventName: StopLogging\ncondition: sel"))
    assert [r.title for r in own.rules] == ["Test rule"]
    folder = tmp_path / "rules"
    both = SigmaTagger(DetectionConfig(rules=[folder]))
    assert len(both.rules) == len(SigmaTagger().rules) + 1


def test_sigma_filters_in_other_files_tune_rules(tmp_path: Path) -> None:
    folder = tmp_path / "tuning"
    folder.mkdir()
    (folder / "terraform.yml").write_text(
        "title: Terraform may stop its own trails\nid: 99999999-9999-4999-8999-999999999999\n"
        "logsource: {product: aws, service: cloudtrail}\n"
        "filter:\n    rules: [a1dec8df-d230-4b22-83d6-e1097af6c067]\n"
        "    selection:\n        userIdentity.userName: terraform\n    condition: not selection\n",
        encoding="utf-8",
    )
    tagger = SigmaTagger(DetectionConfig(rules=[folder]))
    assert matches(tagger, event()) == ["AWS CloudTrail Logging Stopped"]
    assert matches(tagger, event(userIdentity__userName="terraform")) == []


# --- one rule, one verdict: in-stream as in the SIEM ----------------------------------------


def test_string_modifiers_on_an_object_field_search_its_json_text(tmp_path: Path) -> None:
    """Sentinel's RequestParameters and Elastic's request_parameters hold the object's JSON text."""
    check(
        tmp_path,
        """
        sel:
            requestParameters|contains: 'g-trail'
            responseElements|startswith: '{"trailARN"'
        condition: sel
        """,
        [
            (event(responseElements={"trailARN": "arn:aws:cloudtrail:x"}), True),
            (event(requestParameters={"name": "other"}, responseElements={"trailARN": "a"}), False),
            (event(responseElements=None), False),
        ],
    )
    check(
        tmp_path / "2",
        """
        sel:
            requestParameters|endswith: '"enable":false}'
            requestParameters|re: '"name":\\s?"org-'
        condition: sel
        """,
        [(event(), True), (event(requestParameters={"name": "x", "enable": False}), False)],
    )


def test_a_field_no_cloudtrail_record_has_is_warned_about_at_load_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = rule_yaml(
        """
        sel:
            eventName: ConsoleLogin
            status: success
        condition: sel
        """,
        title="Never fires",
    )
    with caplog.at_level("WARNING", logger="trailrelay.detection"):
        tagger = make_tagger(tmp_path, text)
    [warning] = tagger.warnings
    assert "rule 'Never fires'" in warning and "'status'" in warning and "never" in warning
    assert warning in caplog.text
    ok = make_tagger(
        tmp_path / "ok",
        rule_yaml("sel:\n    userIdentity.sessionContext.sessionIssuer.type: Role\ncondition: sel"),
    )
    assert ok.warnings == []
