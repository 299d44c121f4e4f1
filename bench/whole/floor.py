"""The floor of trailrelay's record path for one SIEM sink: its unavoidable steps and nothing else.

    python floor.py splunk|elastic|opensearch TRAIL http://127.0.0.1:PORT [--mode ecs] [--no-pack]

One thread, one pass: read each ``.json.gz`` object whole, gunzip it (ISA-L), split it and decode
the routing fields (msgspec, as the pipeline does), tag it with the detection pack, encode the
records with the connector's own encoder, gzip each body (ISA-L level 1) and POST it with
``requests``. No tickets, checkpoints, retries, dead letters, back-pressure, threads or metrics.

The whole-process benchmark runs it beside the naive forwarder and trailrelay: its CPU time is
the least trailrelay could spend on the same job with the same libraries, so it shows how much
of a gap to a target is overhead that could be removed and how much is the work itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec
import requests
from isal import igzip

from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.plugins import load_sink
from trailrelay.record import Origin
from trailrelay.sources.parse import records_of_array

ENCODE_EVERY = 10_000
"""Records gathered (across objects) before they are encoded: bodies come out full, as the sink's."""

_SPLIT = msgspec.json.Decoder(list[msgspec.Raw])

_SINKS = {
    "splunk": (
        {"type": "splunk", "token": "bench-token"},
        "/services/collector/event",
        {"Authorization": "Splunk bench-token"},
    ),
    "elastic": ({"type": "elastic", "api_key": "bench"}, "/_bulk", {"Authorization": "ApiKey bench"}),
    "opensearch": ({"type": "opensearch", "index": "cloudtrail"}, "/_bulk", {}),
}


def main(kind: str, trail: str, url: str, mode: str | None, pack: bool) -> None:
    table, path, headers = _SINKS[kind]
    plugin = load_sink(kind)
    config = plugin.config_model.validate({**table, "url": url, **({"mode": mode} if mode else {})})
    encoder = plugin.encoder(config)
    tagger = SigmaTagger() if pack else None
    session = requests.Session()
    session.headers.update({**headers, "Content-Type": encoder.content_type, "Content-Encoding": "gzip"})

    def post(records: list) -> None:
        for body in encoder.encode(records):
            session.post(url + path, data=igzip.compress(body, compresslevel=1)).raise_for_status()

    pending: list = []
    for file in sorted(Path(trail).rglob("*.json.gz")):
        data = igzip.decompress(file.read_bytes())
        array = data[data.index(b"[") : data.rindex(b"]") + 1]
        records = records_of_array(array, _SPLIT.decode(array), Origin("file", str(file)))
        pending += tagger.many(records) if tagger is not None else records
        if len(pending) >= ENCODE_EVERY:
            post(pending)
            pending = []
    if pending:
        post(pending)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=sorted(_SINKS))
    p.add_argument("trail")
    p.add_argument("url")
    p.add_argument("--mode", help="the Elasticsearch sink's mode (ecs)")
    p.add_argument("--no-pack", dest="pack", action="store_false", help="without the detection pack")
    a = p.parse_args()
    main(a.kind, a.trail, a.url, a.mode, a.pack)
