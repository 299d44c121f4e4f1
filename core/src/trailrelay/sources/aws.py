"""boto3 clients for sources: region, endpoint (S3-compatible stores, tests) and an assumed role."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.credentials import DeferredRefreshableCredentials, RefreshableCredentials
from botocore.exceptions import ClientError, NoRegionError
from botocore.session import Session as BotocoreSession
from botocore.session import get_session
from botocore.utils import parse_timestamp

from trailrelay.errors import ConfigError

__all__ = ["AssumeRoleError", "aws_client", "parse_aws_timestamp", "queue_region", "renew_credentials"]


class AssumeRoleError(ClientError):
    """STS refused or failed an ``AssumeRole`` of the configured ``role_arn``; the text names the role.

    Still a ``ClientError`` with STS's answer, so whoever decides whether a failure passes
    (a 503 or throttling does, AccessDenied does not) reads its code and status as before.
    """

    def __init__(self, cause: ClientError, role_arn: str) -> None:
        super().__init__(cause.response, cause.operation_name)
        self.role_arn = role_arn

    def __str__(self) -> str:
        code = self.response.get("Error", {}).get("Code", "")
        hint = (
            " (does the role's trust policy let these credentials assume it?)"
            if code in {"AccessDenied", "AccessDeniedException"}
            else ""
        )
        return f"cannot assume role_arn {self.role_arn}: {super().__str__()}{hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        return AssumeRoleError, (ClientError(self.response, self.operation_name), self.role_arn)


class _RefreshFailedInOneLine(logging.Filter):
    """botocore logs a failed renewal of temporary credentials with its traceback: not ours to show.

    A failure in the mandatory period (no usable credentials) reaches the caller, which says it
    in its own words: not logged twice. One in the advisory period (the credentials still work
    a while) is logged in one line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not str(record.msg).startswith("Refreshing temporary credentials failed"):
            return True
        if "mandatory" in record.getMessage():
            return False
        record.msg, record.args = "%s %s: %s", (record.getMessage(), type(exc).__name__, exc)
        record.exc_info = None
        record.exc_text = None
        return True


logging.getLogger("botocore.credentials").addFilter(_RefreshFailedInOneLine())


def parse_aws_timestamp(value: Any) -> dt.datetime:
    """The timestamp parser of botocore, without dateutil for the two forms S3 answers with.

    ``LastModified`` comes as ISO 8601 in UTC in a listing (``2026-12-01T00:05:00.000Z``) and
    as an RFC 7231 date in a GET's headers (``Tue, 01 Dec 2026 00:05:00 GMT``). botocore reads
    both with ``dateutil`` at ~30 µs each, two per object read: a few per cent of a whole run
    over small objects. Anything else (epoch numbers, other zones) goes to botocore's parser.
    """
    if isinstance(value, str):
        if value[-1:] == "Z" and "T" in value:
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                pass
        elif value[-4:] == " GMT":
            try:
                return email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                pass
    parsed: dt.datetime = parse_timestamp(value)
    return parsed


def _session() -> BotocoreSession:
    """A botocore session whose clients parse timestamps with :func:`parse_aws_timestamp`."""
    core = get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_aws_timestamp)
    return core


def aws_client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    role_arn: str | None = None,
    max_pool: int = 16,
) -> Any:
    """A boto3 client; ``AWS_ENDPOINT_URL`` is honoured by boto3 itself when no endpoint is given.

    With ``role_arn`` the client uses credentials of that role (cross-account reads), renewed
    before they expire so a long-running worker keeps working. The role is first assumed at the
    client's first request, not here: a refusal or an STS outage is that request's failure
    (an :class:`AssumeRoleError`), which the source reports or, when it passes, rides out.
    """
    session = boto3.session.Session(botocore_session=_session(), region_name=region)
    if role_arn:
        sts = session.client("sts", endpoint_url=endpoint_url)

        def refresh() -> dict[str, str]:
            try:
                creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="trailrelay")["Credentials"]
            except ClientError as exc:
                raise AssumeRoleError(exc, role_arn) from None
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        core = _session()
        creds = DeferredRefreshableCredentials(refresh, "sts-assume-role")
        core._credentials = creds  # type: ignore[attr-defined]
        session = boto3.session.Session(botocore_session=core, region_name=region)
    config = BotoConfig(
        max_pool_connections=max_pool,
        retries={"mode": "adaptive", "max_attempts": 8},
        user_agent_extra="trailrelay",
    )
    factory: Any = session.client  # service names are data here, not literals for the stubs
    try:
        return factory(service, endpoint_url=endpoint_url, config=config)
    except NoRegionError:
        raise ConfigError(
            f"no AWS region for {service}: set region in the config's [source], or AWS_REGION"
        ) from None


def renew_credentials(client: Any) -> bool:
    """Have the client's temporary credentials fetched again at its next request; False if they cannot be.

    An assumed role's are assumed again; a user's keys are not renewable. For an answer that
    says the session is over (``ExpiredToken``) before the expiry botocore knows of: botocore
    renews only by that time, so it would keep sending the dead session.
    """
    signer = getattr(client, "_request_signer", None)
    creds = getattr(signer, "_credentials", None)
    if not isinstance(creds, RefreshableCredentials):
        return False
    creds._expiry_time = dt.datetime.now(dt.UTC)  # type: ignore[attr-defined]  # no public "renew now"
    return True


def queue_region(queue_url: str) -> str | None:
    """The region an SQS queue URL names; None for other hosts (a test's endpoint).

    ``https://sqs.REGION.amazonaws.com/…`` (also ``.amazonaws.com.cn``), ``sqs-fips.REGION…``,
    the dual-stack ``https://sqs.REGION.api.aws/…``, a VPC endpoint's
    ``https://vpce-….sqs.REGION.vpce.amazonaws.com/…``, the legacy
    ``https://REGION.queue.amazonaws.com/…`` and ``https://queue.amazonaws.com/…`` (us-east-1).
    """
    host = (urlsplit(queue_url).hostname or "").lower()
    parts = host.split(".")
    if host == "queue.amazonaws.com":
        return "us-east-1"
    if len(parts) >= 4 and parts[1] == "queue" and parts[2] == "amazonaws":
        return parts[0]
    for i, part in enumerate(parts[:-3]):
        if part in {"sqs", "sqs-fips"} and (
            parts[i + 2 : i + 4] in (["amazonaws", "com"], ["vpce", "amazonaws"])
            or parts[i + 2 :] == ["api", "aws"]
        ):
            return parts[i + 1]
    return None
