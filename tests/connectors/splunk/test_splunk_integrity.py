"""Integrity events ([integrity]) in Splunk: their own sourcetype and index, time = verified_at.

Golden checks of the envelope, then a signed test trail forwarded from a local mirror through
the whole pipeline to the HEC stand-in, CloudTrail records and integrity events side by side;
``trailrelay doctor --send``'s findings (integrity-shaped events) with indexer acknowledgement.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from splunk_hec_standin import HecStandIn
from splunk_testkit import TOKEN, make_config

from trailrelay.cli.main import cli
from trailrelay.config import parse_config
from trailrelay.contract import Origin, Record
from trailrelay.integrity.records import integrity_record
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.testing import SAMPLE_DIGEST, SAMPLE_EVENTS, SAMPLE_INTEGRITY_EVENT
from trailrelay.testing.trail import TrailBuilder
from trailrelay_splunk.encode import INTEGRITY_KIND, EnvelopeEncoder

DIGEST = SAMPLE_DIGEST
EVENT: dict[str, Any] = SAMPLE_INTEGRITY_EVENT


def test_kind_matches_core() -> None:
    assert integrity_record(EVENT).origin.kind == INTEGRITY_KIND


def test_integrity_envelope_golden() -> None:
    encoder = EnvelopeEncoder(make_config("http://127.0.0.1:1", index="aws", source="fixed", fields=["risk"]))
    envelope = orjson.loads(encoder.envelope(integrity_record(EVENT)))
    assert envelope == {
        "time": dt.datetime(2026, 3, 2, 10, 0, 5, tzinfo=dt.UTC).timestamp(),
        "source": DIGEST,  # the digest that was checked, never the fixed CloudTrail source
        "sourcetype": "trailrelay:integrity",
        "index": "aws",
        "fields": {
            "trailrelay_rule": ["trailrelay-integrity-failed"],
            "trailrelay_severity": "critical",
            "trailrelay_technique": ["T1070"],
        },
        "event": EVENT,
    }
    # CloudTrail records keep their own shape next to it
    cloudtrail = orjson.loads(
        encoder.envelope(Record.from_document(SAMPLE_EVENTS[0], Origin("s3", "s3://b/k")))
    )
    assert (cloudtrail["sourcetype"], cloudtrail["source"]) == ("aws:cloudtrail", "fixed")


def test_integrity_sourcetype_and_index_are_configurable_and_bytes_are_spliced() -> None:
    config = make_config(
        "http://127.0.0.1:1", index="aws", integrity_index="audit", integrity_sourcetype="my:integrity"
    )
    record = integrity_record({**EVENT, "verdict": "valid", "problems": []})
    raw = EnvelopeEncoder(config).envelope(record)
    assert raw.endswith(b',"event":' + record.raw + b"}")  # the event's JSON, not re-serialised
    envelope = orjson.loads(raw)
    assert (envelope["sourcetype"], envelope["index"]) == ("my:integrity", "audit")
    assert "fields" not in envelope  # valid: no detection fields


def test_time_falls_back_to_verified_at_in_the_document() -> None:
    record = Record.from_document(EVENT, Origin(INTEGRITY_KIND, DIGEST))  # e.g. rebuilt elsewhere
    assert record.epoch is None
    envelope = orjson.loads(EnvelopeEncoder(make_config("http://127.0.0.1:1", index=None)).envelope(record))
    assert envelope["time"] == dt.datetime(2026, 3, 2, 10, 0, 5, tzinfo=dt.UTC).timestamp()
    assert "index" not in envelope  # the token's default index, as for CloudTrail records


def test_forwarding_with_integrity_end_to_end(hec: HecStandIn, tmp_path: Path) -> None:
    hec.allowed_indexes = {"aws", "audit"}
    b = TrailBuilder("trail-bucket")
    keys = b.chain("111122223333", "us-east-1", start=dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC), hours=3)
    changed = b.digest_doc(keys[2])["logFiles"][0]["s3Object"]
    b.write(tmp_path / "mirror")
    path = tmp_path / "mirror" / changed
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[40] ^= 1
    path.write_bytes(gzip.compress(bytes(content)))
    (tmp_path / "key.der").write_bytes(b.public_der)
    table = {
        "source": {"type": "files", "path": "mirror"},
        "sinks": [
            {
                "type": "splunk",
                "url": hec.url,
                "token": TOKEN,
                "index": "aws",
                "integrity_index": "audit",
                "filter": {},
                "batch_seconds": 0.05,
            }
        ],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {"enabled": True, "public_keys": {b.fingerprint: "key.der"}},
    }
    built = build_pipeline(parse_config(table, base_dir=tmp_path), once=True, backoff_base=0.001)
    result = built.pipeline.run()
    for sink in built.sinks.values():
        sink.close()
    assert result.ok and result.open_units == 0
    integrity = [e for e in hec.stored if e["sourcetype"] == "trailrelay:integrity"]
    cloudtrail = [e for e in hec.stored if e["sourcetype"] == "aws:cloudtrail"]
    assert len(cloudtrail) == 3 * 6 and {e["index"] for e in cloudtrail} == {"aws"}
    assert {e["index"] for e in integrity} == {"audit"}
    by_digest = {e["source"]: e for e in integrity if e["event"]["digest"]}
    assert set(by_digest) == {f"s3://trail-bucket/{k}" for k in keys}
    (stopped,) = [e for e in integrity if not e["event"]["digest"]]  # the trail ended in 2026-03
    assert (stopped["event"]["verdict"], stopped["event"]["chain"]) == ("window-not-covered", "stopped")
    assert stopped["source"] == f"s3://trail-bucket/{keys[-1]}" and stopped["index"] == "audit"
    assert "trailrelay-integrity-chain-gap" in stopped["fields"]["trailrelay_rule"]
    bad = by_digest[f"s3://trail-bucket/{keys[2]}"]
    assert bad["event"]["verdict"] == "invalid" and bad["event"]["counts"]["modified"] == 1
    assert bad["fields"]["trailrelay_rule"] == ["trailrelay-integrity-failed"]
    assert bad["time"] == dt.datetime.fromisoformat(bad["event"]["verified_at"]).timestamp()
    assert all(by_digest[f"s3://trail-bucket/{k}"]["event"]["verdict"] == "valid" for k in keys[:2])


def _doctor(tmp_path: Path, url: str, token: str, *args: str) -> tuple[int, str, str]:
    """``doctor --send --fail-on never ARGS`` against moto, its findings sent to the HEC at ``url``."""
    config = tmp_path / "doctor.toml"
    config.write_text(
        '[source]\ntype = "files"\npath = "."\n[[sinks]]\ntype = "splunk"\n'
        f'url = "{url}"\ntoken = "{token}"\nindex = "aws"\nack_poll_interval = 0.01\n'
        '[doctor]\ntrail = "no-such-trail"\nfast_path = false\n'
    )
    result = CliRunner().invoke(cli, ["doctor", "-c", str(config), "--send", "--fail-on", "never", *args])
    return result.exit_code, result.stdout, result.stderr


def test_doctor_send_waits_for_the_indexer_acknowledgement(
    hec_ack: HecStandIn, aws_env: str, tmp_path: Path
) -> None:
    """A token with useACK (what `trailrelay splunk setup` makes): each finding is delivered once acked."""
    hec_ack.ack_delay = 0.2
    code, out, err = _doctor(tmp_path, hec_ack.url, TOKEN, "--json")
    report = orjson.loads(out)
    n = len(report["findings"])
    assert n >= 1  # at least: the trail named is not there
    assert (code, report["exit_status"]) == (0, 0), err
    assert f"sent {n} of {n} findings to sink splunk" in err
    assert len(hec_ack.stored) == n and hec_ack.unconfirmed() == 0
    assert {e["sourcetype"] for e in hec_ack.stored} == {"trailrelay:integrity"}


def test_doctor_send_refused_exits_3_and_says_so(hec_ack: HecStandIn, aws_env: str, tmp_path: Path) -> None:
    wrong = "00000000-0000-0000-0000-000000000000"
    code, out, err = _doctor(tmp_path, hec_ack.url, wrong, "--json")
    assert (code, orjson.loads(out)["exit_status"]) == (3, 3)  # the JSON says what the process exits with
    assert "sent 0 of" in err and "sink splunk:" in err
    code, out, _ = _doctor(tmp_path, hec_ack.url, wrong)
    assert code == 3
    assert "FAIL: " in out and "--send did not deliver every finding" in " ".join(out.split())
    assert hec_ack.stored == []
