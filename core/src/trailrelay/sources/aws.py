"""boto3 clients for sources: region, endpoint (S3-compatible stores, tests) and an assumed role."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

__all__ = ["aws_client"]


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
    before they expire so a long-running worker keeps working.
    """
    session = boto3.session.Session(region_name=region)
    if role_arn:
        sts = session.client("sts", endpoint_url=endpoint_url)

        def refresh() -> dict[str, str]:
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="trailrelay")["Credentials"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        core = get_session()
        creds = RefreshableCredentials.create_from_metadata(refresh(), refresh, "sts-assume-role")
        core._credentials = creds  # type: ignore[attr-defined]
        session = boto3.session.Session(botocore_session=core, region_name=region)
    config = BotoConfig(
        max_pool_connections=max_pool,
        retries={"mode": "adaptive", "max_attempts": 8},
        user_agent_extra="trailrelay",
    )
    factory: Any = session.client  # service names are data here, not literals for the stubs
    return factory(service, endpoint_url=endpoint_url, config=config)
