"""Run trailrelay as an AWS Lambda function: set the handler to ``trailrelay.aws_lambda.handler``.

One function accepts every event shape that can carry CloudTrail to it: S3 object
notifications (direct, through SNS, or from EventBridge), SQS batches of them (answered with
``batchItemFailures``), EventBridge "AWS API Call via CloudTrail" events, CloudWatch Logs
subscription payloads (``awslogs.data``) and Kinesis Data Firehose data-transformation events.
The configuration comes from ``TRAILRELAY_CONFIG`` (see :mod:`trailrelay.aws_lambda.settings`);
it is read, and the sinks are opened, once per container.
"""

from __future__ import annotations

from typing import Any

__all__ = ["handler"]


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: forward what the event names or carries; answer in its protocol."""
    # Imported here, not at the top: trailrelay.config imports this package's models, and the
    # invocation module imports the pipeline, which imports trailrelay.config.
    from trailrelay.aws_lambda.invoke import handle  # noqa: PLC0415

    return handle(event, context)
