"""The benchmark's trail: the real corpus replicated into S3-layout ``.json.gz`` objects.

Every record of the shared corpus is replayed with a fresh eventID (so de-duplicating sinks
store each one) and written compactly into ``{"Records": [...]}`` objects, as CloudTrail
writes them. A fixed share of records is high-risk (a corpus record the detection pack tags);
the untagged variant puts an ordinary record of the same source in those places, so the two
runs differ only in tagging.
"""

from __future__ import annotations

import gzip
import random
import uuid
from pathlib import Path

import orjson

from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.testing import corpus_dir, load_records

__all__ = ["build_trail", "corpus_events"]

ACCOUNT = "111122223333"
REGION = "us-east-1"


def corpus_events() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(ordinary, high-risk) corpus records as dicts; high-risk = tagged by the shipped pack."""
    root = corpus_dir()
    if root is None:
        raise SystemExit("the real CloudTrail corpus is needed: set TRAILRELAY_CORPUS (../shared/corpus)")
    tagger = SigmaTagger(DetectionConfig())
    plain: list[dict[str, object]] = []
    risky: list[dict[str, object]] = []
    for record in load_records(root / "cloudtrail"):
        if record.routing.event_time is None:
            continue
        doc = orjson.loads(record.raw)
        tagger(record)
        (risky if record.tags else plain).append(doc)
    if not risky:
        raise SystemExit("no corpus record is tagged by the detection pack")
    return plain, risky


def build_trail(
    out: Path, *, records: int = 200_000, objects: int = 100, tagged_share: float = 0.02, seed: int = 7
) -> tuple[Path, Path]:
    """Write the tagged and the untagged trail under ``out``; returns both folders."""
    plain, risky = corpus_events()
    rng = random.Random(seed)
    per_object = records // objects
    tagged_dir, untagged_dir = out / "tagged", out / "untagged"
    done = out / ".complete"  # beside the trails, not in them (it is no log file)
    if done.exists():
        return tagged_dir, untagged_dir
    n = 0
    for k in range(objects):
        rows_t: list[bytes] = []
        rows_u: list[bytes] = []
        for _ in range(per_object):
            base = plain[n % len(plain)]
            hot = rng.random() < tagged_share
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            t = dict(rng.choice(risky) if hot else base, eventID=event_id)
            u = dict(base, eventID=event_id)
            rows_t.append(orjson.dumps(t))
            rows_u.append(orjson.dumps(u))
            n += 1
        name = f"{ACCOUNT}_CloudTrail_{REGION}_20261206T{k // 60:02d}{k % 60:02d}Z_{k:016x}.json.gz"
        key = Path("AWSLogs", ACCOUNT, "CloudTrail", REGION, "2026", "12", "06", name)
        for folder, rows in ((tagged_dir, rows_t), (untagged_dir, rows_u)):
            path = folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(b'{"Records":[' + b",".join(rows) + b"]}", 6))
    done.touch()
    return tagged_dir, untagged_dir


def big_object(out: Path, *, records: int = 200_000, seed: int = 7) -> Path:
    """One large object holding ``records`` records (for the streaming rows)."""
    path = out / "big" / "AWSLogs" / ACCOUNT / "CloudTrail" / REGION / "2026" / "12" / "06" / "big.json.gz"
    if path.exists():
        return out / "big"
    plain, _ = corpus_events()
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=6) as fh:
        fh.write(b'{"Records":[')
        for i in range(records):
            doc = dict(plain[i % len(plain)], eventID=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
            fh.write((b"," if i else b"") + orjson.dumps(doc))
        fh.write(b"]}")
    return out / "big"
