"""The parts of a pipeline, built from a validated configuration.

Sources, transforms, pseudonymizers, sinks and their runners, dead letters; the
:class:`~trailrelay.pipeline.forwarder.Forwarder` puts them together.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trailrelay import __version__
from trailrelay.config import (
    Config,
    FilesSourceConfig,
    FirehoseSourceConfig,
    LambdaSourceConfig,
    S3SourceConfig,
    SqsSourceConfig,
    StdinSourceConfig,
)
from trailrelay.contract import Sink, SinkConfig, SinkContext
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.errors import ConfigError
from trailrelay.pipeline.deadletter import DeadLetterStore, FolderDeadLetters, S3DeadLetters
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.runner import Pipeline, Transform
from trailrelay.plugins import BUILTIN_SINKS, installed_sinks, load_sink
from trailrelay.privacy import Pseudonymizer, build_pseudonymizers
from trailrelay.privacy.config import TRANSFORMATION
from trailrelay.record import Record
from trailrelay.settings import secret_values
from trailrelay.sources.base import Source
from trailrelay.sources.files import FileSource
from trailrelay.state import Checkpoints
from trailrelay.transforms.filters import RecordFilter

__all__ = [
    "attach_sinks",
    "build_dead_letters",
    "build_privacy",
    "build_sink",
    "build_source",
    "build_transforms",
    "files_source_path",
]


def build_sink(config: SinkConfig) -> Sink:
    """Instantiate one configured sink through its plugin."""
    plugin = load_sink(config.type)
    if config.type in BUILTIN_SINKS:
        made_by = f"trailrelay/{__version__}"
    else:
        dist = installed_sinks()[config.type]
        made_by = f"trailrelay/{__version__} {dist.distribution}/{dist.version}"
    name = config.display_name
    context = SinkContext(name=name, logger=logging.getLogger(f"trailrelay.sinks.{name}"), user_agent=made_by)
    return plugin.create(config, context)


def files_source_path(config: Config) -> Path | None:
    """A files source's path (None for other sources); ConfigError when it does not exist."""
    path = config.files_path()
    if path is not None and not path.exists():
        raise ConfigError(f"source path {path} does not exist")
    return path


def build_source(
    config: Config,
    *,
    once: bool,
    checkpoints: Checkpoints | None,
) -> Source:
    """The configured source (standard input's leftovers go to ``Pipeline.dead_letter_unsent``)."""
    src = config.source
    limit = config.pipeline.max_object_bytes
    if isinstance(src, StdinSourceConfig) or (isinstance(src, FilesSourceConfig) and str(src.path) == "-"):
        from trailrelay.sources.stdin import StdinSource  # noqa: PLC0415

        unit = src if isinstance(src, StdinSourceConfig) else StdinSourceConfig(type="stdin")
        return StdinSource(
            unit_records=unit.unit_records,
            unit_seconds=unit.unit_seconds,
            max_object_bytes=limit,
            max_record_bytes=config.pipeline.max_record_bytes,
        )
    path = files_source_path(config)
    if path is not None:
        return FileSource(path, checkpoints)
    if isinstance(src, S3SourceConfig):
        from trailrelay.sources.aws import aws_client  # noqa: PLC0415 - boto3 only when AWS is read
        from trailrelay.sources.s3 import S3Source  # noqa: PLC0415

        s3 = aws_client("s3", region=src.region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)
        return S3Source(
            s3,
            src.bucket,
            src.prefix,
            start=src.start_time,
            end=src.end_time,
            insights=src.insights,
            checkpoints=checkpoints,
            max_object_bytes=limit,
        )
    if isinstance(src, FirehoseSourceConfig):
        from trailrelay.sources.firehose import build_firehose_source  # noqa: PLC0415

        return build_firehose_source(src, max_object_bytes=limit, base_dir=config.base_dir)
    if isinstance(src, LambdaSourceConfig):
        raise ConfigError(
            'source.type: "lambda" runs only inside AWS Lambda (handler trailrelay.aws_lambda.handler)'
        )
    assert isinstance(src, SqsSourceConfig)
    from trailrelay.sources.aws import aws_client, queue_region  # noqa: PLC0415
    from trailrelay.sources.sqs import SqsSource  # noqa: PLC0415

    region = src.region or queue_region(src.queue_url)  # the queue's URL names its region
    sqs = aws_client("sqs", region=region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)
    s3 = aws_client("s3", region=region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)
    return SqsSource(
        sqs,
        s3,
        src.queue_url,
        wait_seconds=src.wait_seconds,
        visibility_timeout=src.visibility_timeout,
        max_messages=src.max_messages,
        once=once,
        insights=src.insights,
        max_object_bytes=limit,
    )


def build_dead_letters(config: Config) -> DeadLetterStore:
    """The configured dead-letter store."""
    uri = config.dead_letter.s3_uri
    if uri:
        from trailrelay.sources.aws import aws_client  # noqa: PLC0415

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        src = config.source
        endpoint = getattr(src, "endpoint_url", None)
        return S3DeadLetters(
            aws_client("s3", region=getattr(src, "region", None), endpoint_url=endpoint), bucket, prefix
        )
    return FolderDeadLetters(config.dead_letter_path())


def build_transforms(config: Config) -> tuple[list[Transform], RecordFilter, SigmaTagger | None]:
    """Risk tagging first (so sampling never drops a tagged record), then the filter.

    ``pack = false`` without ``rules`` turns detection off; with rules of which none is for
    CloudTrail, it is a ConfigError (nothing the user asked for would run).
    """
    record_filter = RecordFilter(config.filter)
    detection = config.detection
    tagger = SigmaTagger(detection, base_dir=config.base_dir) if (detection.pack or detection.rules) else None
    if tagger is not None and not tagger.rules:  # pack = false and rules named, none for CloudTrail
        skipped = len(tagger.plan.skipped)
        why = f" ({skipped} skipped: `trailrelay rules list -c CONFIG` says why)" if skipped else ""
        raise ConfigError(
            "[detection] rules hold no rule for aws/cloudtrail and pack = false, so nothing would be "
            f"detected{why}: name CloudTrail rules, set pack = true, or leave rules out to turn detection off"
        )
    transforms: list[Transform] = []
    if tagger is not None:
        transforms.append(tagger)

    if config.filter.rules or config.filter.default == "drop":  # no rules: nothing to ask per record

        def keep(record: Record) -> Record | None:
            return record if record_filter.keep(record) else None

        transforms.append(keep)
    return transforms, record_filter, tagger


def build_privacy(config: Config) -> dict[str, Pseudonymizer]:
    """The pseudonymizer of each sink that has one, by sink name (built once per process).

    In a Lambda config the Firehose data transformation's answer counts as a sink too.
    """
    names = [sc.display_name for sc in config.sinks]
    if isinstance(config.source, LambdaSourceConfig):
        names.append(TRANSFORMATION)
    return build_pseudonymizers(config.privacy, names, config.base_dir) if config.privacy else {}


def attach_sinks(
    pipeline: Pipeline,
    config: Config,
    sinks: dict[str, Sink],
    *,
    privacy: dict[str, Pseudonymizer] | None = None,
    backoff_base: float = 0.5,
) -> None:
    """One runner per configured sink on ``pipeline``, sharing its stop, metrics and dead letters."""
    privacy = privacy or {}
    for sc in config.sinks:
        name = sc.display_name
        pipeline.sinks[name] = SinkRunner(
            name,
            sinks[name],
            dead_letters=pipeline.dead_letters,
            metrics=pipeline.metrics,
            stop=pipeline.stop,
            on_fatal=pipeline.on_fatal,
            max_retry_seconds=sc.max_retry_seconds,
            backoff_base=backoff_base,
            max_age=sc.batch_seconds,
            record_filter=RecordFilter(sc.filter) if sc.filter.rules or sc.filter.default == "drop" else None,
            prepare=privacy[name].apply if name in privacy else None,
            secrets=secret_values(sc),
        )
