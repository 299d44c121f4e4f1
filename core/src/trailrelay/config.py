"""The TOML configuration, read once at start-up into typed objects.

``${NAME}`` in any string value is replaced by the environment variable (``${NAME:-default}``
by ``default`` when the variable is unset or empty, as in the shell), and ``${file:/path}`` by
the file's content (a relative path is relative to the config file), a trailing newline removed
from either (a secret made with ``echo`` has one), so secrets stay out of the file. Errors name
the key and what is wrong, never a value. ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from trailrelay.aws_lambda.models import LambdaSourceConfig
from trailrelay.contract import SinkConfig
from trailrelay.detection.config import DetectionConfig
from trailrelay.doctor.config import DoctorConfig
from trailrelay.errors import ConfigError
from trailrelay.integrity.config import IntegrityConfig
from trailrelay.plugins import BUILTIN_SINKS, installed_sinks, load_sink
from trailrelay.privacy.config import PrivacyConfig
from trailrelay.settings import Meta, Settings, field
from trailrelay.sinks.file_config import FileConfig
from trailrelay.sources.firehose_config import FirehoseSourceConfig
from trailrelay.transforms.filters import FilterConfig

__all__ = [
    "Config",
    "DeadLetterConfig",
    "FilesSourceConfig",
    "FirehoseSourceConfig",
    "LambdaSourceConfig",
    "PipelineConfig",
    "S3SourceConfig",
    "SqsSourceConfig",
    "StateConfig",
    "StdinSourceConfig",
    "load_config",
    "load_sink_config",
    "parse_config",
]

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
"""A reference ``${...}``, the escape ``$${`` (a literal ``${``), or a ``${`` never closed."""


class FilesSourceConfig(Settings):
    """``[source] type = "files"``: a file or folder, read recursively."""

    type: Literal["files"]
    path: Path


class StdinSourceConfig(Settings):
    """``[source] type = "stdin"``: standard input, to its end (``files`` with ``path = "-"`` too).

    Every shape the files source reads (gzip detected by its magic bytes). The stream is cut into
    units acknowledged when their records are final in every sink: every ``unit_records`` records
    or ``unit_seconds`` after a unit's first record, whichever comes first.
    """

    type: Literal["stdin"]
    unit_records: Annotated[int, Meta(ge=1, le=100_000, description="Records per unit of work.")] = 1000
    unit_seconds: Annotated[
        float, Meta(gt=0, le=3600, description="Longest a record waits for its unit to fill.")
    ] = 1.0


class _AwsSource(Settings):
    region: Annotated[
        str | None,
        Meta(description="AWS region of the bucket/queue (SQS: the queue URL's when unset; else the SDK's)."),
    ] = None
    endpoint_url: Annotated[str | None, Meta(description="S3/SQS-compatible endpoint (tests, MinIO).")] = None
    role_arn: Annotated[str | None, Meta(description="Role to assume (cross-account reads).")] = None
    insights: Annotated[bool, Meta(description="Also read CloudTrail-Insight objects.")] = False


class S3SourceConfig(_AwsSource):
    """``[source] type = "s3"``: list a bucket prefix, optionally a time window."""

    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("start_time", "end_time"):
            t = getattr(self, name)
            if t is not None and t.tzinfo is None:
                msgspec.structs.force_setattr(self, name, t.replace(tzinfo=dt.UTC))
        if self.start_time and self.end_time and self.start_time > self.end_time:
            raise ValueError("start_time is after end_time")
        _check_bucket_name(self.bucket)


def _check_bucket_name(bucket: str) -> None:
    """ValueError for a bucket written as a URL or path (``s3://b/AWSLogs/``): say how to split it."""
    if bucket.startswith("arn:"):  # an access point: its ARN holds a slash
        return
    name, _, path = bucket.removeprefix("s3://").partition("/")
    if name != bucket:
        raise ValueError(
            f'bucket is the bucket\'s name alone: write bucket = "{name}"'
            + (f' and prefix = "{path}"' if path else "")
        )


class SqsSourceConfig(_AwsSource):
    """``[source] type = "sqs"``: a queue of S3 object notifications."""

    type: Literal["sqs"]
    queue_url: str
    wait_seconds: Annotated[int, Meta(ge=0, le=20)] = 20
    visibility_timeout: Annotated[int, Meta(ge=10, le=43200)] = 300
    max_messages: Annotated[int, Meta(ge=1, le=10)] = 10


SourceConfig = (
    FilesSourceConfig
    | StdinSourceConfig
    | S3SourceConfig
    | SqsSourceConfig
    | FirehoseSourceConfig
    | LambdaSourceConfig
)

_SOURCES: dict[str, type[SourceConfig]] = {
    "files": FilesSourceConfig,
    "stdin": StdinSourceConfig,
    "s3": S3SourceConfig,
    "sqs": SqsSourceConfig,
    "firehose": FirehoseSourceConfig,
    "lambda": LambdaSourceConfig,
}


class DeadLetterConfig(Settings):
    """``[dead_letter]``: a local folder (default) or an ``s3://bucket/prefix``."""

    path: Path | None = None
    s3_uri: Annotated[str, Meta(pattern=r"^s3://[^/]+(/.*)?$")] | None = None


class StateConfig(Settings):
    """``[state]``: the SQLite checkpoint file."""

    path: Path | None = None
    hash_objects: Annotated[
        bool,
        Meta(
            description="Keep the SHA-256 of each forwarded object (uncompressed, as CloudTrail's digests "
            "sign it) so integrity checks can compare without re-reading the bucket."
        ),
    ] = False


LOCAL_SOURCES = frozenset({"files", "stdin"})
"""Source types read from this machine: nothing to wait for but the CPU."""
FETCHING_SOURCES = frozenset({"s3", "sqs", "lambda"})
"""Source types whose readers GET each object from S3 and wait for it (tens of ms a GET)."""


class PipelineConfig(Settings):
    """``[pipeline]``: reader threads and limits."""

    readers: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=64,
                description="Reader threads (objects read at once). Default: 1 for a files or stdin source, "
                "whose reading is all CPU (a second thread only waits for the GIL and costs ~10% more CPU); "
                "8 for S3, SQS and Lambda, whose readers spend most of their time waiting for S3 GETs; "
                "2 for Firehose, whose requests arrive with their records.",
            ),
        ]
        | None
    ) = None

    max_object_bytes: Annotated[int, Meta(ge=1 << 10, description="Decompressed size limit.")] = 1 << 30
    max_record_bytes: Annotated[
        int,
        Meta(
            ge=1 << 10,
            description="Largest single record read from a stream; a longer one is dead-lettered with "
            "its reason, never held in memory whole.",
        ),
    ] = 16 << 20
    drain_seconds: Annotated[float, Meta(ge=0, description="Grace period for in-flight batches on stop.")] = (
        30.0
    )

    def reader_threads(self, source: str) -> int:
        """``readers``, or its default for a source of type ``source``."""
        if self.readers is not None:
            return self.readers
        if source in LOCAL_SOURCES:
            return 1
        return 8 if source in FETCHING_SOURCES else 2


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The whole configuration file, assembled by :func:`parse_config` from its validated tables."""

    source: SourceConfig
    sinks: list[SinkConfig]
    filter: FilterConfig = field(default_factory=FilterConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    privacy: PrivacyConfig | None = None
    dead_letter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    state: StateConfig = field(default_factory=StateConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    integrity: IntegrityConfig = field(default_factory=IntegrityConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    base_dir: Path = Path()
    """The config file's folder (relative paths are relative to it); not a key of the file."""
    file_stem: str | None = None
    """The config file's name without its suffix (None: not read from a file); not a key of the file."""

    def dead_letter_path(self) -> Path:
        """Local dead-letter folder (relative paths are relative to the config file)."""
        return self.base_dir / (self.dead_letter.path or Path("dead-letters"))

    def state_path(self) -> Path:
        """SQLite checkpoint file (relative paths are relative to the config file).

        By default one per config file, ``.trailrelay/<file name without suffix>.sqlite``, so that
        two configs in one folder (one SIEM each) do not share one. Where a folder already has
        ``.trailrelay/state.sqlite`` (the one default of versions before 2026-12-08), a config
        without its own file keeps using that one: an upgrade sends nothing again.
        """
        if self.state.path is not None:
            return self.base_dir / self.state.path
        folder = self.base_dir / ".trailrelay"
        legacy = folder / "state.sqlite"
        if self.file_stem is None:
            return legacy
        own = folder / f"{self.file_stem}.sqlite"
        return legacy if legacy.exists() and not own.exists() else own

    def files_path(self) -> Path | None:
        """A files source's path, relative to the config file; None for other sources and stdin ("-")."""
        src = self.source
        if not isinstance(src, FilesSourceConfig) or str(src.path) == "-":
            return None
        return self.base_dir / src.path


def load_config(path: Path | str, *, source_required: bool = True) -> Config:
    """Read, interpolate and validate a TOML config file (``source_required``: see parse_config)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=p.resolve().parent, file_stem=p.stem, source_required=source_required)


def load_sink_config(path: str | Path, sink_type: str, name: str | None = None) -> SinkConfig:
    """The validated ``[[sinks]]`` table of ``sink_type`` (by ``name`` when there are several).

    What :func:`trailrelay.contract.load_sink_config` answers connector commands with: the file
    is read exactly as ``trailrelay forward`` reads it.
    """
    candidates = [s for s in load_config(path).sinks if s.type == sink_type]
    if name is not None:
        candidates = [s for s in candidates if s.display_name == name]
    if len(candidates) != 1:
        have = ", ".join(s.display_name for s in candidates) or "none"
        what = f"named {name!r} " if name else ""
        raise ConfigError(f"{path}: need exactly one {sink_type} sink {what}(found: {have}); use --sink NAME")
    return candidates[0]


def parse_config(
    raw: dict[str, Any],
    *,
    base_dir: Path | None = None,
    file_stem: str | None = None,
    source_required: bool = True,
) -> Config:
    """Validate an already-parsed config table (interpolating ``${...}`` first).

    ``file_stem``: the config file's name without its suffix (it names the default checkpoint file).
    ``source_required=False`` (the Python API, which is handed its records): a missing
    ``[source]`` stands for records handed in, read in this process as standard input's are
    (``type = "stdin"``); a ``[source]`` given is still validated.
    """
    doc = _interpolate(raw, "", base_dir=base_dir)
    sink_tables = doc.pop("sinks", None)
    if not isinstance(sink_tables, list) or not sink_tables:
        hint = " (the file has a 'sink' table: write [[sinks]])" if "sink" in doc else ""
        raise ConfigError(f"[[sinks]]: at least one sink is required{hint}")
    sinks = [_relative_to(_sink(t, i), base_dir) for i, t in enumerate(sink_tables)]
    names = [s.display_name for s in sinks]
    if len(set(names)) != len(names):
        raise ConfigError(f'[[sinks]]: names must be unique (got {names}); set name = "..." on each')
    unknown = sorted(set(doc) - {"source", *_TABLES})
    if unknown:
        raise ConfigError(f"invalid configuration:\n  {unknown[0]}: unknown key (not a table of the file)")
    tables: dict[str, Any] = {
        key: _TABLES[key].validate(_table(value, key), where=key)
        for key, value in doc.items()
        if key != "source"
    }
    handed_in = not source_required and doc.get("source") is None
    config = Config(
        source=_SOURCES["stdin"].validate({"type": "stdin"}) if handed_in else _source(doc.get("source")),
        sinks=sinks,
        base_dir=base_dir or Path(),
        file_stem=file_stem,
        **tables,
    )
    if config.privacy is not None:
        config.privacy.check_sinks(names)
    if not handed_in:  # records handed in: no objects to check (Forwarder installs no checks)
        config.integrity.check_source(config.source)
    return config


_TABLES: dict[str, type[Settings]] = {
    "filter": FilterConfig,
    "detection": DetectionConfig,
    "privacy": PrivacyConfig,
    "dead_letter": DeadLetterConfig,
    "state": StateConfig,
    "pipeline": PipelineConfig,
    "integrity": IntegrityConfig,
    "doctor": DoctorConfig,
}
"""The file's tables besides ``[source]`` and ``[[sinks]]``."""


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"invalid configuration:\n  {where}: must be a table")
    return value


def _source(table: Any) -> SourceConfig:
    if table is None:
        raise ConfigError("invalid configuration:\n  source: required")
    kind = _table(table, "source").get("type")
    if kind not in _SOURCES:
        raise ConfigError("invalid configuration:\n  source.type: required, one of " + ", ".join(_SOURCES))
    return _SOURCES[kind].validate(table, where="source")


def _sink(table: Any, i: int) -> SinkConfig:
    where = f"sinks[{i}]"
    if not isinstance(table, dict) or not isinstance(table.get("type"), str):
        types = sorted({*BUILTIN_SINKS, *installed_sinks()})  # what is installed, not a fixed list
        raise ConfigError(f"{where}.type: required, one of the installed sink types: {', '.join(types)}")
    plugin = load_sink(table["type"])
    return plugin.config_model.validate(table, where=where)


def _relative_to(config: SinkConfig, base_dir: Path | None) -> SinkConfig:
    """A file sink's relative path is relative to the config file, like the source's."""
    if base_dir is not None and isinstance(config, FileConfig) and not config.path.is_absolute():
        return config.replace(path=base_dir / config.path)
    return config


def _interpolate(value: Any, where: str, *, base_dir: Path | None = None) -> Any:
    """``value`` with its references resolved; a relative ``${file:...}`` is under ``base_dir``."""
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{where}.{k}" if where else k, base_dir=base_dir) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", base_dir=base_dir) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _REF.sub(lambda m: _substitute(m, where, base_dir), value)
    return value


def _substitute(match: re.Match[str], where: str, base_dir: Path | None) -> str:
    if match.group(0) == "$${":  # the escape
        return "${"
    ref = match.group(1)
    if ref is None:  # a typo such as "${HEC_TOKEN" would otherwise be sent as the value itself
        raise ConfigError(f"{where}: ${{ is never closed with }} (write $${{ for a literal ${{)")
    if not ref:
        raise ConfigError(f"{where}: ${{}} names nothing (write $${{ for a literal ${{)")
    return _resolve(ref, where, base_dir)


def _resolve(ref: str, where: str, base_dir: Path | None) -> str:
    if ref.startswith("file:"):
        path = Path(ref[5:]).expanduser()
        if base_dir is not None and not path.is_absolute():  # like every other path of the file
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    name, sep, default = ref.partition(":-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{where}: ${{{ref}}} is not a valid reference (use ${{NAME}} or ${{file:/path}})")
    value = os.environ.get(name)
    if value is not None:
        value = value.rstrip("\r\n")
    if sep and not value:  # as the shell's ${NAME:-default}: unset or empty
        return default
    if value is None:
        raise ConfigError(f"{where}: environment variable {name} is not set")
    return value
