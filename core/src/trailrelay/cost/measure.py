"""Sample a source, read it with core's readers and measure what each SIEM would bill.

Objects are grouped by the hour in their CloudTrail file name (``..._20260302T1005Z_...``).
When the source holds more hours (or bytes) than the sampling limits, a seeded simple random
sample of hours is read in full; otherwise everything is read (a census). A local folder read
in full is grouped by the events' own hour instead. When the objects' names give no hour
(exports, renamed copies) each object is a unit, and the time span is read from the sampled
records' ``eventTime``. Every record goes through the risk tagger
(as ``forward`` does), each profile's deciders, each sink's privacy profile from the config's
``[privacy]``, and one :class:`~trailrelay.cost.billing.Meter` per sink: one for each of the
user's sinks (``-c``) of an installed connector, else the demo placeholders. A SIEM with several
sinks in the config is billed for each; its figures add them up.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trailrelay.config import Config, PipelineConfig
from trailrelay.contract import FilterConfig, Origin, Record, SinkConfig
from trailrelay.cost.billing import Meter
from trailrelay.cost.profiles import DEFAULT, Decider, Profile, RuleRef, builtin_profiles, config_profile
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.errors import InputError, TrailrelayError
from trailrelay.plugins import SHIPPED_CONNECTORS, installed_sinks, load_sink
from trailrelay.sources.files import list_files
from trailrelay.sources.layout import key_time
from trailrelay.sources.parse import NotALogFile, Problem
from trailrelay.sources.stream import read_stream

__all__ = [
    "KNOWN_SIEMS",
    "RAW",
    "Limits",
    "Measurement",
    "Meters",
    "SampleObject",
    "Target",
    "Unit",
    "build_meters",
    "list_local",
    "list_s3",
    "measure",
    "per_sink",
    "plan_sample",
    "span_of",
]

KNOWN_SIEMS = tuple(SHIPPED_CONNECTORS)
"""Connectors trailrelay ships; the report names those not installed."""

RAW = "raw"
"""Pseudo-SIEM key for the records' own JSON bytes (what an archive keeps)."""

_ARCHIVES = frozenset({"file", "stdout"})
_COMPRESSION_SAMPLE = 4 << 20
"""Request-body bytes per connector kept to measure the gzip ratio."""
_LINE = re.compile(r"^line \d+: ")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much to read at most."""

    max_hours: int = 48
    """Hours sampled at most; fewer when the source has fewer."""
    max_bytes: int = 2 << 30
    """Stored (compressed) bytes read at most."""
    subsample: int = 10
    """Every n-th record is also pseudonymized and compressed to measure those effects."""
    seed: int = 7


@dataclass(frozen=True, slots=True)
class SampleObject:
    """One object of the source: where it is, its size, its hour, and how to fetch it."""

    origin: Origin
    size: int
    hour: dt.datetime | None
    fetch: Callable[[], bytes]

    @property
    def group(self) -> str:
        """The sampling unit the object belongs to."""
        return self.hour.strftime("%Y-%m-%dT%H") if self.hour else f"object:{self.origin.location}"


@dataclass
class Unit:
    """One sampling unit read in full: its totals per (profile, SIEM)."""

    key: str
    objects: int = 0
    stored_bytes: int = 0
    records: int = 0
    volume: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(profile, siem) -> [events, billable bytes, request-body bytes]."""

    def add(self, profile: str, siem: str, billable: int, sent: int) -> None:
        """Count one record kept by ``profile`` for ``siem``."""
        v = self.volume.get((profile, siem))
        if v is None:
            self.volume[(profile, siem)] = [1, billable, sent]
        else:
            v[0] += 1
            v[1] += billable
            v[2] += sent


@dataclass
class Measurement:
    """Everything read from a sample, ready to extrapolate and price."""

    source: str
    census: bool
    population_units: int
    span_hours: float
    """Hours the source covers (0 when unknown: nothing can be said per day)."""
    units: list[Unit]
    siems: list[str]
    sinks: list[tuple[str, str]]
    """(name, SIEM) of each of the config's sinks measured: :func:`per_sink` keys its volumes."""
    units_of: dict[str, str]
    rules_of: dict[str, str]
    profiles: list[Profile]
    missing: list[str]
    failed: dict[str, str]
    population_objects: int = 0
    population_stored_bytes: int = 0
    objects_read: int = 0
    stored_bytes_read: int = 0
    raw_bytes_read: int = 0
    records: int = 0
    seconds_reading: float = 0.0
    seconds_processing: float = 0.0
    skipped: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    rule_bytes: dict[tuple[str, RuleRef], list[int]] = field(default_factory=dict)
    """(siem, rule) -> [events in order, billable in order, events alone, billable alone]."""
    by_source: Counter[str] = field(default_factory=Counter)
    by_source_events: Counter[str] = field(default_factory=Counter)
    by_name: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_name_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    privacy: dict[str, list[int]] = field(default_factory=dict)
    """siem -> [records, billable before, billable after] on the subsample."""
    privacy_note: str = ""
    privacy_applied: bool = False
    """True when the config's ``[privacy]`` is applied to every figure (``privacy`` is its effect);
    else ``privacy`` is a what-if of the built-in ``standard`` profile."""
    compression: dict[str, list[int]] = field(default_factory=dict)
    """siem -> [body bytes, gzip bytes] on the subsample."""
    meter_failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    disk_of: dict[str, str] = field(default_factory=dict)
    """siem -> the price-table assumption giving its on-disk bytes per billable byte."""
    span_from_records: bool = False
    """True when the objects' names give no hour: ``span_hours`` is that of the sampled records."""

    @property
    def throughput(self) -> float:
        """Uncompressed bytes processed per second of CPU work (read, parse, encode, bill)."""
        return self.raw_bytes_read / self.seconds_processing if self.seconds_processing else 0.0


# -- listing -------------------------------------------------------------------------------------


def _hour(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(minute=0, second=0, microsecond=0) if t is not None else None


def list_local(path: Path) -> tuple[list[SampleObject], Counter[str]]:
    """Log files under a local path (as the files source lists them) and skip counts."""
    files, skipped = list_files(path)
    if not files and not path.exists():
        raise TrailrelayError(f"{path} does not exist")
    out = [
        SampleObject(
            Origin("file", str(p), size=p.stat().st_size),
            p.stat().st_size,
            _hour(key_time(p.name)),
            p.read_bytes,
        )
        for p in files
    ]
    return out, Counter(reason for reason, _ in skipped)


def list_s3(
    client: Any, bucket: str, prefix: str, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[list[SampleObject], Counter[str]]:
    """Log objects of a bucket prefix (the CloudTrail layout, only the window's day folders)."""
    import threading  # noqa: PLC0415 - only the S3 path needs it

    from trailrelay.sources.s3 import S3Source  # noqa: PLC0415 - boto3 only when reading S3

    source = S3Source(client, bucket, prefix, start=start, end=end)
    out: list[SampleObject] = []
    skipped: Counter[str] = Counter()
    for work in source.work(threading.Event()):
        skipped.update(reason for reason, _ in work.skipped)
        for ref in work.objects:
            key = ref.origin.key or ""
            out.append(SampleObject(ref.origin, ref.origin.size or 0, _hour(key_time(key)), ref.fetch))
    return out, skipped


def plan_sample(
    objects: Sequence[SampleObject], limits: Limits
) -> tuple[list[list[SampleObject]], int, bool]:
    """The units to read (each a list of objects), the population's unit count, and census or not.

    A local folder within ``max_bytes`` is read whole, however many hours it holds.
    """
    groups: dict[str, list[SampleObject]] = defaultdict(list)
    for obj in objects:
        groups[obj.group].append(obj)
    keys = sorted(groups)
    total = sum(o.size for o in objects)
    local = all(o.origin.kind == "file" for o in objects)
    if total <= limits.max_bytes and (local or len(keys) <= limits.max_hours):
        return [groups[k] for k in keys], len(keys), True
    rng = random.Random(limits.seed)  # noqa: S311 - sampling, not secrets
    order = rng.sample(keys, len(keys))
    chosen: list[str] = []
    used = 0
    for k in order:
        size = sum(o.size for o in groups[k])
        if len(chosen) >= limits.max_hours or (chosen and used + size > limits.max_bytes):
            break
        chosen.append(k)
        used += size
    return [groups[k] for k in sorted(chosen)], len(keys), False


def span_of(objects: Sequence[SampleObject]) -> float:
    """Hours from the first to the last hour the objects were written in (inclusive); 0 if unknown."""
    hours = [o.hour for o in objects if o.hour is not None]
    if not hours:
        return 0.0
    return _span_hours(min(hours), max(hours))


def _span_hours(first: dt.datetime, last: dt.datetime) -> float:
    """Hours from the hour of ``first`` to the hour of ``last``, both included."""
    start = first.replace(minute=0, second=0, microsecond=0)
    end = last.replace(minute=0, second=0, microsecond=0)
    return (end - start).total_seconds() / 3600 + 1


# -- connectors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One sink measured: a sink of the config, or the placeholder of a SIEM it does not use."""

    name: str
    """The sink's name in the config; ``<siem> (default)`` for a placeholder."""
    siem: str
    meter: Meter
    filter: FilterConfig | None = None
    """The sink's own filter; None for a placeholder (its connector's default filter is assumed)."""


def per_sink(name: str) -> str:
    """The profile key under which one sink's share of the ``config`` profile is counted."""
    return f"config:{name}"


@dataclass
class Meters:
    """The sinks measured, and the SIEMs that could not be."""

    targets: list[Target]
    missing: list[str]
    failed: dict[str, str]

    @property
    def meters(self) -> dict[str, Meter]:
        """A meter per SIEM measured (its first sink's): the unit and rule the report names."""
        out: dict[str, Meter] = {}
        for t in self.targets:
            out.setdefault(t.siem, t.meter)
        return out


def build_meters(sinks: Sequence[SinkConfig] | None) -> Meters:
    """A target per sink of the config of an installed connector, each with its own settings.

    An installed connector the config does not use (every one, without a config) gets one
    placeholder target. A connector that cannot be measured for one of its sinks is reported
    and none of its sinks is measured (a part of a SIEM's bill would be a false total).
    """
    from trailrelay.sinks.placeholders import placeholder_config  # noqa: PLC0415 - shared placeholders

    installed = installed_sinks()
    targets: list[Target] = []
    failed: dict[str, str] = {}
    for siem in installed:
        if siem in _ARCHIVES:
            continue
        configured = [sc for sc in sinks or [] if sc.type == siem]
        where = ""
        try:
            plugin = load_sink(siem)
            found: list[Target] = []
            for sc in configured:
                where = f"sink {sc.display_name}: "
                found.append(Target(sc.display_name, siem, Meter.for_plugin(siem, plugin, sc), sc.filter))
            if not configured:
                placeholder = plugin.config_model.validate(placeholder_config(siem, plugin) or {"type": siem})
                found.append(Target(f"{siem} (default)", siem, Meter.for_plugin(siem, plugin, placeholder)))
        except Exception as exc:  # a broken connector is reported, never fatal
            failed[siem] = f"{where}{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            continue
        targets += found
    missing = [s for s in KNOWN_SIEMS if s not in installed]
    return Meters(targets, missing, failed)


_Prepare = Callable[[Record], Record]


def _config_privacy(config: Config | None, targets: Sequence[Target]) -> list[_Prepare | None]:
    """Each target's privacy step: the profile the config's ``[privacy]`` gives its sink, or None.

    The same :class:`~trailrelay.privacy.Pseudonymizer` forward builds for the sink, with a
    throw-away key instead of the real one: a token has the same length under any key, so the
    bytes billed are the same, and the estimate needs no access to the key. A SIEM the config
    does not use gets the ``default`` profile, as a sink added for it would.
    """
    privacy = config.privacy if config is not None else None
    if privacy is None:
        return [None for _ in targets]
    from trailrelay.privacy import Key, Pseudonymizer, Tokenizer  # noqa: PLC0415

    tokenizer = Tokenizer(Key(os.urandom(32), "a throw-away key for the cost report"))
    built: dict[str, _Prepare] = {}
    out: list[_Prepare | None] = []
    for t in targets:
        name = privacy.profile_for(t.name)
        if name is not None and name not in built:
            built[name] = Pseudonymizer(privacy.profile(name), tokenizer, name=name).apply
        out.append(built[name] if name is not None else None)
    return out


def _pseudonymizer() -> tuple[_Prepare | None, str]:
    """The built-in ``standard`` privacy profile with a throw-away key, when core has it."""
    try:
        from trailrelay.privacy import STANDARD_PROFILE, Key, Pseudonymizer  # noqa: PLC0415
    except ImportError:
        return None, "pseudonymization is not available in this version"
    p = Pseudonymizer(STANDARD_PROFILE, Key(os.urandom(32), "a throw-away key for the cost report"))
    return p.apply, "the built-in 'standard' privacy profile (IPs truncated, names and e-mails tokenized)"


# -- reading -------------------------------------------------------------------------------------


def _records(data: bytes, origin: Origin, m: Measurement, limits: tuple[int, int]) -> Iterator[Record]:
    """The object's records, read as forward reads them within ``limits`` (object, record bytes).

    What forward would dead-letter is counted by reason instead: a record it cannot read (or
    over ``max_record_bytes``), or the point where the object stops being readable.
    """
    max_object, max_record = limits
    stream = read_stream(io.BytesIO(data), origin, limit=max_object, max_record_bytes=max_record)
    try:
        for item in stream:
            if isinstance(item, Problem):
                m.problems[f"{'object' if item.terminal else 'record'}: {_why(item.reason)}"] += 1
                continue
            yield item
    except NotALogFile as skip:
        m.skipped[skip.kind] += 1
    except InputError as exc:
        m.problems[f"object: {_why(str(exc))}"] += 1


def _why(reason: str) -> str:
    """A problem's kind, to count it by: its reason without where it happened or the details."""
    return _LINE.sub("", reason).split(":")[0].split(" (reading stopped")[0]


def _fetched(
    units: Sequence[Sequence[SampleObject]], threads: int
) -> Iterator[tuple[int, SampleObject, bytes | None]]:
    """(unit index, object, bytes or None) in order, fetched ahead by a few threads."""

    def get(obj: SampleObject) -> bytes | None:
        try:
            return obj.fetch()
        except Exception:
            return None

    flat = [(i, o) for i, unit in enumerate(units) for o in unit]
    if threads <= 1:
        for i, o in flat:
            yield i, o, get(o)
        return
    with ThreadPoolExecutor(threads) as pool:
        window = 4 * threads
        futures = [pool.submit(get, o) for _, o in flat[:window]]
        for n, (i, o) in enumerate(flat):
            if n + window < len(flat):
                futures.append(pool.submit(get, flat[n + window][1]))
            yield i, o, futures[n].result()
            futures[n] = None  # type: ignore[call-overload]  # free the bytes


class _Rules:
    """Per-SIEM rule attribution for the profile whose rules are reported (its sinks add up)."""

    def __init__(self, profile: Profile | None, targets: Sequence[Target], m: Measurement) -> None:
        self.items: list[tuple[int, str, Decider, list[RuleRef]]] = []
        if profile is not None:
            for i, t in enumerate(targets):
                d = profile.decider(t.name)
                self.items.append((i, t.siem, d, d.rules))
                for ref in d.rules:
                    m.rule_bytes.setdefault((t.siem, ref), [0, 0, 0, 0])
        self.m = m

    def add(self, record: Record, billable: Sequence[int | None]) -> None:
        """Attribute ``record``, whose billable bytes at each target are ``billable`` (None: not sent)."""
        rb = self.m.rule_bytes
        for i, s, decider, rules in self.items:
            size = billable[i]
            if size is None:
                continue
            dropped = decider.decide(record)
            if dropped is not None:
                v = rb[(s, dropped)]
                v[0] += 1
                v[1] += size
            for ref in rules:
                if (ref.name != DEFAULT and decider.alone(ref, record)) or (
                    ref.name == DEFAULT and dropped == ref
                ):
                    v = rb[(s, ref)]
                    v[2] += 1
                    v[3] += size


def _tagger(config: Config | None, tag: bool) -> SigmaTagger | None:
    """The risk tagger: forward's own for ``config``, else the shipped pack (unless ``tag`` is False).

    Forward's is the shipped pack and the user's ``[detection] rules``, or none at all.
    """
    if config is None:
        return SigmaTagger() if tag else None
    from trailrelay.pipeline.build import build_transforms  # noqa: PLC0415 - forward's own assembly

    return build_transforms(config)[2]


def measure(
    objects: Sequence[SampleObject],
    *,
    source: str,
    config: Config | None = None,
    tag: bool = True,
    limits: Limits | None = None,
    threads: int = 1,
    progress: Callable[[int], None] | None = None,
    skipped: Counter[str] | None = None,
    meters: Meters | None = None,
) -> Measurement:
    """Read the sampled units of ``objects`` and measure every profile on every connector.

    With ``config`` (``-c``), records go through what ``forward`` would do with it: its risk
    tagger, its global ``[filter]`` and each sink's own filter (the ``config`` profile), measured
    at each of its sinks. ``meters`` replaces the installed connectors (tests measure a fake
    encoder with it).
    """
    limits = limits or Limits()
    built = meters if meters is not None else build_meters(config.sinks if config is not None else None)
    targets = built.targets
    siems = sorted(built.meters)
    sinks = [(t.name, t.siem, t.filter) for t in targets]
    profiles = builtin_profiles(sinks, attribute_default=config is None)
    if config is not None:
        profiles.append(config_profile(config.filter, sinks))
    units_plan, population, census = plan_sample(objects, limits)
    local_census = census and all(o.origin.kind == "file" for o in objects)
    m = Measurement(
        source=source,
        census=census,
        population_units=population,
        span_hours=span_of(objects),
        units=[],
        siems=siems,
        sinks=[(t.name, t.siem) for t in targets if config is not None and t.filter is not None],
        units_of={s: meter.rule.unit for s, meter in built.meters.items()},
        rules_of={s: meter.rule.rule for s, meter in built.meters.items()},
        disk_of={s: meter.rule.disk_ratio for s, meter in built.meters.items() if meter.rule.disk_ratio},
        profiles=profiles,
        missing=built.missing,
        failed=built.failed,
        population_objects=len(objects),
        population_stored_bytes=sum(o.size for o in objects),
        skipped=Counter(skipped or {}),
    )
    tagger = _tagger(config, tag)
    pc = config.pipeline if config is not None else PipelineConfig()
    read_limits = (pc.max_object_bytes, pc.max_record_bytes)
    """Forward's: the config's ``[pipeline]`` max_object_bytes and max_record_bytes."""
    rules = _Rules(next((p for p in reversed(profiles) if p.attribute), None), targets, m)
    prepares = _config_privacy(config, targets)
    refused: Counter[str] = Counter()
    """Records a target's privacy profile could not be applied to (forward dead-letters them there)."""
    if config is not None and config.privacy is not None:
        pseudo, m.privacy_applied = None, True
        m.privacy_note = "your config's [privacy] profiles, applied to every figure"
    else:
        pseudo, m.privacy_note = _pseudonymizer()
    first = {s: next(i for i, t in enumerate(targets) if t.siem == s) for s in siems}
    """Each SIEM's first target: the privacy effect and compression are measured on it."""
    units: dict[object, Unit] = {}
    """Units by object group (sampled) or by event hour (a local census)."""
    bodies: dict[str, list[bytes]] = {s: [] for s in siems}
    deciders = [
        (p.name, p.decider("*"), [p.decider(t.name) for t in targets], p.name == "config") for p in profiles
    ]
    event_hours: list[dt.datetime] = []
    span_from_records = not local_census and m.span_hours == 0
    """No object name gives an hour: the span is read from the records' eventTime."""
    earliest: dt.datetime | None = None
    latest: dt.datetime | None = None
    n = 0
    t_read = time.perf_counter()
    for i, obj, data in _fetched(units_plan, threads):
        t0 = time.perf_counter()
        if data is None:
            m.problems["object: fetch failed"] += 1
            continue
        m.objects_read += 1
        m.stored_bytes_read += len(data)
        unit_key = units_plan[i][0].group
        unit = units.get(unit_key)
        if unit is None and not local_census:
            unit = units[unit_key] = Unit(unit_key)
        if unit is not None:
            unit.objects += 1
            unit.stored_bytes += len(data)
        for record in _records(data, obj.origin, m, read_limits):
            raw_len = len(record.raw)
            m.raw_bytes_read += raw_len
            if tagger is not None:
                tagger(record)
            r = record.routing
            if local_census:
                hour = _hour(r.event_time)
                unit = units.get(hour)
                if unit is None:
                    key = hour.strftime("%Y-%m-%dT%H") if hour else "unknown"
                    unit = units[hour] = Unit(key)
                    if hour is not None:
                        event_hours.append(hour)
            elif span_from_records and r.event_time is not None:
                earliest = r.event_time if earliest is None else min(earliest, r.event_time)
                latest = r.event_time if latest is None else max(latest, r.event_time)
            assert unit is not None
            unit.records += 1
            n += 1
            src = r.event_source or "(none)"
            line = record.line()
            m.by_source[src] += len(line)
            m.by_source_events[src] += 1
            m.by_name[(src, r.event_name or "(none)")] += len(line)
            m.by_name_events[(src, r.event_name or "(none)")] += 1
            sizes = [
                _sized(t, prepare, record, refused) for t, prepare in zip(targets, prepares, strict=True)
            ]
            for pname, star, per_target, by_sink in deciders:
                star_kept = star.decide(record) is None
                if star_kept:
                    unit.add(pname, RAW, len(line), len(line) + 1)
                for t, d, size in zip(targets, per_target, sizes, strict=True):
                    if size is not None and (star_kept if d is star else d.decide(record) is None):
                        unit.add(pname, t.siem, *size)
                        if by_sink and t.filter is not None:
                            unit.add(per_sink(t.name), t.siem, *size)
            rules.add(record, [size[0] if size is not None else None for size in sizes])
            if limits.subsample and n % limits.subsample == 0:
                firsts = {s: (targets[i].meter, prepares[i], sizes[i]) for s, i in first.items()}
                _subsample(record, firsts, pseudo, m, bodies)
        m.seconds_processing += time.perf_counter() - t0
        if progress is not None:
            progress(obj.size)
    m.seconds_reading = time.perf_counter() - t_read
    m.records = n
    m.units = sorted(units.values(), key=lambda u: u.key)
    if local_census:
        m.population_units = len(m.units)
        m.span_hours = _span_hours(min(event_hours), max(event_hours)) if event_hours else 0.0
    elif span_from_records and earliest is not None and latest is not None:
        m.span_hours, m.span_from_records = _span_hours(earliest, latest), True
    _compress(bodies, m)
    failures: dict[str, list[str]] = defaultdict(list)
    for t in targets:
        if t.meter.failures:
            failures[t.siem].append(
                f"{t.meter.failures} record(s) could not be encoded for {t.name} ({t.meter.last_error})"
            )
        if refused[t.name]:
            failures[t.siem].append(
                f"{refused[t.name]} record(s) could not be pseudonymized for {t.name} "
                "(forward dead-letters them there; not billed)"
            )
    m.meter_failures = {s: "; ".join(why) for s, why in failures.items()}
    return m


def _sized(
    target: Target, prepare: _Prepare | None, record: Record, refused: Counter[str]
) -> tuple[int, int] | None:
    """(billable, request-body bytes) of ``record`` at a target after its privacy profile.

    None when the profile cannot be applied: forward dead-letters the record for that sink.
    """
    if prepare is not None:
        try:
            record = prepare(record)
        except InputError:
            refused[target.name] += 1
            return None
    return target.meter.measure(record)


def _subsample(
    record: Record,
    firsts: dict[str, tuple[Meter, _Prepare | None, tuple[int, int] | None]],
    pseudo: _Prepare | None,
    m: Measurement,
    bodies: dict[str, list[bytes]],
) -> None:
    """Privacy's effect and the bodies to compress, on each SIEM's first sink.

    ``firsts``: per SIEM, that sink's meter, privacy step and the record's sizes there. The
    effect is that of the config's privacy (``pseudo`` is None then), else the what-if of
    ``pseudo`` on the record as it is.
    """
    masked: Record | None = None
    if pseudo is not None:
        try:
            masked = pseudo(record)
        except InputError:
            masked = None
    for s, (meter, prepare, size) in firsts.items():
        if size is None:  # not sent: its privacy profile refused it
            continue
        billable = size[0]
        sent = record
        effect: tuple[int, int] | None = None
        if m.privacy_applied:
            sent = prepare(record) if prepare is not None else record
            effect = (meter.measure(record)[0] if sent is not record else billable, billable)
        elif masked is not None:
            effect = (billable, meter.measure(masked)[0] if masked is not record else billable)
        if effect is not None:
            v = m.privacy.setdefault(s, [0, 0, 0])
            v[0] += 1
            v[1] += effect[0]
            v[2] += effect[1]
        held = m.compression.setdefault(s, [0, 0])
        if held[0] < _COMPRESSION_SAMPLE:
            try:
                more = meter.encoder.encode([sent])
            except Exception:  # noqa: S112 - counted by the meter already
                continue
            bodies[s].extend(more)
            held[0] += sum(len(b) for b in more)


def _compress(bodies: dict[str, list[bytes]], m: Measurement) -> None:
    import gzip  # noqa: PLC0415

    for s, parts in bodies.items():
        if parts:
            blob = b"".join(parts)
            m.compression[s] = [len(blob), len(gzip.compress(blob, 6))]
