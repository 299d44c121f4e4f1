"""Integrity events ([integrity]) in Sentinel: TrailrelayIntegrity_CL through their own stream.

Golden rows, the DCR template's table / stream / flow, the real LogsIngestionClient against the
stand-in (a DCR that declares both streams), and a signed test trail forwarded from a local
mirror through the whole pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from click.testing import CliRunner
from conftest import CLIENT, RULE, SECRET, STREAM, TENANT
from sentinel_standin import Standin, StandinState

from trailrelay.config import parse_config
from trailrelay.contract import Batch, ConfigError, FatalSinkError, Origin, Record, Status
from trailrelay.integrity.records import integrity_record
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.testing import SAMPLE_DIGEST, SAMPLE_INTEGRITY_EVENT, sample_records
from trailrelay.testing.trail import TrailBuilder
from trailrelay_sentinel.cli import group
from trailrelay_sentinel.encode import SentinelEncoder
from trailrelay_sentinel.integrity import (
    INTEGRITY_COLUMNS,
    INTEGRITY_KIND,
    INTEGRITY_STREAM,
    INTEGRITY_TABLE,
    integrity_row,
)
from trailrelay_sentinel.template import TemplateOptions, arm_template, bicep_template

DIGEST = SAMPLE_DIGEST
EVENT: dict[str, Any] = SAMPLE_INTEGRITY_EVENT
DECLARED = {c.name for c in INTEGRITY_COLUMNS}


class IntegrityDcrStandin(Standin):
    """The stand-in for a DCR deployed with ``--integrity``: it also takes the integrity stream.

    Rows of that stream must hold only declared columns, with TimeGenerated (a DCR drops the
    rest, so a mistake there would silently lose data in Azure: here it is a 400).
    """

    def __init__(self, state: StandinState, server_cert: Any) -> None:
        super().__init__(state, server_cert)
        base = self._server.RequestHandlerClass

        class Handler(base):  # type: ignore[valid-type, misc]
            def _ingest(
                self, rule_id: str, stream: str, query: dict[str, str], headers: dict[str, str], raw: bytes
            ) -> tuple[int, Any, dict[str, str], list[dict[str, Any]] | None]:
                if stream != INTEGRITY_STREAM:
                    return super()._ingest(rule_id, stream, query, headers, raw)
                status, body, extra, rows = super()._ingest(
                    rule_id, self.server.state.stream, query, headers, raw
                )
                for row in rows or []:
                    if not set(row) <= DECLARED or "TimeGenerated" not in row:
                        error = {"error": {"code": "InvalidPayload", "message": f"undeclared columns {row}"}}
                        return 400, error, {"x-ms-error-code": "InvalidPayload"}, None
                return status, body, extra, rows

        self._server.RequestHandlerClass = Handler


@pytest.fixture
def dcr(server_cert: trustme.LeafCert) -> Any:
    server = IntegrityDcrStandin(StandinState(TENANT, CLIENT, SECRET, RULE, STREAM), server_cert)
    yield server
    server.stop()


def sink_table(standin: Standin, ca_file: str) -> dict[str, Any]:
    return {
        "type": "sentinel",
        "endpoint": standin.url,
        "rule_id": RULE,
        "stream": STREAM,
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "authority_host": standin.url,
        "disable_instance_discovery": True,
        "ca_bundle": ca_file,
        "timeout": 5,
    }


def uploads_to(standin: Standin, stream: str) -> list[dict[str, Any]]:
    return [
        row for u in standin.state.uploads if u.stream == stream and u.status == 204 for row in u.rows or []
    ]


# -- rows and template -----------------------------------------------------------------------------


def test_kind_matches_core() -> None:
    assert integrity_record(EVENT).origin.kind == INTEGRITY_KIND


def test_integrity_row_golden() -> None:
    assert integrity_row(integrity_record(EVENT)) == {
        "TimeGenerated": "2026-03-02T10:00:05Z",
        "EventType": "trailrelay:integrity",
        "Verdict": "invalid",
        "Chain": "linked",
        "Digest": DIGEST,
        "Account": "111122223333",
        "Region": "us-east-1",
        "Trail": "org-trail",
        "HomeRegion": "us-east-1",
        "Organization": "o-abcdef1234",
        "Backfill": False,
        "DigestStart": "2026-03-01T21:01:31Z",
        "DigestEnd": "2026-03-01T22:01:31Z",
        "Signature": "valid",
        "LogFiles": 2,
        "ValidLogFiles": 1,
        "ModifiedLogFiles": 1,
        "MissingLogFiles": 0,
        "UnreadableLogFiles": 0,
        "NotForwardedLogFiles": 0,
        "Problems": EVENT["problems"],
        "StoreLocation": "s3://trail-bucket/",
        "WindowStart": "2026-03-02T07:00:00Z",
        "WindowEnd": "2026-03-02T08:00:00Z",
        "TrailrelayDetections": [
            {
                "rule_id": "trailrelay-integrity-failed",
                "title": "CloudTrail log integrity check failed: log-modified",
                "severity": "critical",
                "technique": "T1070",
            }
        ],
    }


def test_sparse_events_leave_columns_out_and_keep_a_time() -> None:
    missing = {"type": "trailrelay:integrity", "verdict": "log-not-covered", "digest": None, "problems": []}
    row = integrity_row(Record.from_document(missing, Origin(INTEGRITY_KIND, "s3://b/l")))
    assert set(row) == {"TimeGenerated", "EventType", "Verdict", "Problems"}
    valid = integrity_row(
        integrity_record({**EVENT, "verdict": "valid", "problems": [], "problems_omitted": 3})
    )
    assert "TrailrelayDetections" not in valid and valid["ProblemsOmitted"] == 3


def test_template_declares_the_integrity_stream_table_and_flow() -> None:
    t = arm_template(TemplateOptions(integrity=True))
    tables = [r for r in t["resources"] if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"]
    (table,) = [r for r in tables if r["properties"]["schema"]["name"] == INTEGRITY_TABLE]
    assert table["properties"]["plan"] == "Analytics"
    columns = table["properties"]["schema"]["columns"]
    assert [c["name"] for c in columns] == [c.name for c in INTEGRITY_COLUMNS]
    types = {c["name"]: c["type"] for c in columns}
    assert (types["TimeGenerated"], types["LogFiles"], types["Problems"], types["Backfill"]) == (
        "dateTime",
        "int",
        "dynamic",
        "boolean",
    )
    (dcr,) = [r for r in t["resources"] if r["type"] == "Microsoft.Insights/dataCollectionRules"]
    props = dcr["properties"]
    declared = props["streamDeclarations"][INTEGRITY_STREAM]["columns"]
    assert [(c["name"], c["type"]) for c in declared] == [(c.name, c.type) for c in INTEGRITY_COLUMNS]
    flow = next(f for f in props["dataFlows"] if f["streams"] == [INTEGRITY_STREAM])
    assert flow == {
        "streams": [INTEGRITY_STREAM],
        "destinations": ["workspace"],
        "transformKql": "source",
        "outputStream": f"Custom-{INTEGRITY_TABLE}",
    }
    assert any(INTEGRITY_TABLE in d for d in dcr["dependsOn"])
    assert t["outputs"]["integrity_stream"]["value"] == INTEGRITY_STREAM
    plain = arm_template(TemplateOptions())
    assert INTEGRITY_STREAM not in json.dumps(plain) and "integrity_stream" not in plain["outputs"]


def test_bicep_has_the_same_integrity_parts() -> None:
    text = bicep_template(TemplateOptions(integrity=True, custom_table="Ct_CL"))
    assert f"name: '{INTEGRITY_TABLE}'" in text and f"'{INTEGRITY_STREAM}': {{" in text
    assert f"outputStream: 'Custom-{INTEGRITY_TABLE}'" in text and "transformKql: 'source'" in text
    assert "dependsOn: [\n    table\n    integrityTable\n  ]" in text
    decl = text.split(f"'{INTEGRITY_STREAM}': {{", 1)[1].split("destinations:", 1)[0]
    assert re.findall(r"name: '(\w+)'", decl) == [c.name for c in INTEGRITY_COLUMNS]
    assert text.count("{") == text.count("}") and text.count("[") == text.count("]")
    with pytest.raises(ValueError, match="differ"):
        TemplateOptions(integrity=True, integrity_stream=STREAM)


def test_cli_template_integrity_flag() -> None:
    res = CliRunner().invoke(group, ["template", "--integrity"])
    assert res.exit_code == 0, res.output
    assert INTEGRITY_STREAM in json.loads(res.output)["outputs"]["integrity_stream"]["value"]


def test_offline_encoder_cuts_streams_apart() -> None:
    bodies = SentinelEncoder().encode([*sample_records(2), integrity_record(EVENT)])
    assert len(bodies) == 2
    cloudtrail, integrity = (orjson.loads(b) for b in bodies)
    assert len(cloudtrail) == 2 and "AwsEventId" in cloudtrail[0]
    assert integrity == [integrity_row(integrity_record(EVENT))]


# -- the sink against the stand-in -----------------------------------------------------------------


def test_a_mixed_batch_goes_to_two_streams(dcr: IntegrityDcrStandin, ca_file: str, make_sink: Any) -> None:
    from conftest import config_for, sink_for

    sink = sink_for(dcr, ca_file, config=config_for(dcr, ca_file))
    sink.open()
    try:
        records = [
            *sample_records(3),
            integrity_record(EVENT),
            integrity_record({**EVENT, "verdict": "valid"}),
        ]
        assert [o.status for o in sink.send(Batch(records))] == [Status.DELIVERED] * 5
    finally:
        sink.close()
    assert len(uploads_to(dcr, STREAM)) == 3
    rows = uploads_to(dcr, INTEGRITY_STREAM)
    assert sorted(r["Verdict"] for r in rows) == ["invalid", "valid"]
    assert all(u.headers["content-encoding"] == "gzip" for u in dcr.state.uploads)


def test_a_dcr_without_the_integrity_stream_stops_the_sink_naming_it(
    make_sink: Any, standin: Standin
) -> None:
    sink = make_sink()
    with pytest.raises(FatalSinkError, match=INTEGRITY_STREAM) as info:
        sink.send(Batch([integrity_record(EVENT)]))
    assert SECRET not in str(info.value)
    assert [u.stream for u in standin.state.uploads] == [INTEGRITY_STREAM]


def test_the_integrity_stream_is_configurable(dcr: IntegrityDcrStandin, ca_file: str) -> None:
    from conftest import config_for

    with pytest.raises(ConfigError, match="Custom-"):
        config_for(dcr, ca_file, integrity_stream="TrailrelayIntegrity")
    assert config_for(dcr, ca_file).integrity_stream == INTEGRITY_STREAM


def test_forwarding_with_integrity_end_to_end(dcr: IntegrityDcrStandin, ca_file: str, tmp_path: Path) -> None:
    b = TrailBuilder("trail-bucket")
    keys = b.chain("111122223333", "us-east-1", start=dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC), hours=3)
    b.write(tmp_path / "mirror")
    missing_log = b.digest_doc(keys[1])["logFiles"][0]["s3Object"]
    (tmp_path / "mirror" / missing_log).unlink()  # deleted before it was ever forwarded
    (tmp_path / "key.der").write_bytes(b.public_der)
    table = {
        "source": {"type": "files", "path": "mirror"},
        "sinks": [{**sink_table(dcr, ca_file), "filter": {}, "batch_seconds": 0.05}],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {"enabled": True, "public_keys": {b.fingerprint: "key.der"}},
    }
    built = build_pipeline(parse_config(table, base_dir=tmp_path), once=True, backoff_base=0.001)
    result = built.pipeline.run()
    for sink in built.sinks.values():
        sink.close()
    assert result.ok and result.open_units == 0
    assert len(uploads_to(dcr, STREAM)) == 3 * 5
    rows = {r.get("Digest"): r for r in uploads_to(dcr, INTEGRITY_STREAM)}
    stopped = rows.pop(None)  # no digest: the chain's digests end in 2026-03, the window at now
    assert (stopped["Verdict"], stopped["Chain"]) == ("window-not-covered", "stopped")
    assert "the chain's last digest ended at 2026-03-02T00:01:31Z" in stopped["Problems"][0]["detail"]
    assert set(rows) == {f"s3://trail-bucket/{k}" for k in keys}
    gap = rows[f"s3://trail-bucket/{keys[1]}"]  # never forwarded, and not in the mirror either
    assert gap["Verdict"] == "invalid" and gap["MissingLogFiles"] == 1 and gap["ValidLogFiles"] == 1
    assert gap["Problems"][0]["kind"] == "log-missing"
    assert gap["TrailrelayDetections"][0]["rule_id"] == "trailrelay-integrity-failed"
    assert all(r["TimeGenerated"] and r["Signature"] == "valid" for r in rows.values())
    assert [rows[f"s3://trail-bucket/{k}"]["Verdict"] for k in (keys[0], keys[2])] == ["valid", "valid"]
