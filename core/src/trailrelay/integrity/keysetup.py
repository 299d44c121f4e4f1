"""The public keys a check verifies digests with: configured key files, a mirror's, or CloudTrail's."""

from __future__ import annotations

import threading
from typing import Any

from trailrelay.config import Config
from trailrelay.integrity.keys import (
    FILE,
    KeyFetcher,
    KeyFileError,
    LoadedKey,
    MirrorKeys,
    cloudtrail_fetcher,
    fingerprint_of,
    load_key_dir,
    load_public_key,
)
from trailrelay.integrity.mirror import KEYS_DIR
from trailrelay.integrity.store import MirrorStore, TrailStore

__all__ = ["key_fetcher", "static_keys"]


def static_keys(config: Config, store: TrailStore) -> tuple[dict[str, LoadedKey], MirrorKeys]:
    """The configured key files (each must have its fingerprint) and, on a mirror, its key files."""
    mirrored = load_key_dir(store.root / KEYS_DIR) if isinstance(store, MirrorStore) else MirrorKeys()
    given: dict[str, LoadedKey] = {}
    for fingerprint, path in config.integrity.public_keys.items():
        fp = fingerprint.strip().lower()
        file = path if path.is_absolute() else config.base_dir / path
        try:
            key = load_public_key(file.read_bytes())
        except OSError as exc:
            raise KeyFileError(
                f"integrity.public_keys.{fingerprint}: cannot read {file}: {exc.strerror}"
            ) from None
        except ValueError as exc:
            raise KeyFileError(f"integrity.public_keys.{fingerprint}: {file}: {exc}") from None
        if fingerprint_of(key) != fp:
            raise KeyFileError(
                f"integrity.public_keys.{fingerprint}: {file} holds the key with fingerprint "
                f"{fingerprint_of(key)}, not {fp}"
            )
        given[fp] = LoadedKey(key, FILE, str(file))
    return given, mirrored


def key_fetcher(config: Config) -> KeyFetcher | None:
    """CloudTrail's ListPublicKeys, one client per region; None when key files are configured."""
    if config.integrity.public_keys:
        return None
    from trailrelay.sources.aws import aws_client  # noqa: PLC0415 - boto3 loads slowly

    role = config.integrity.role_arn or getattr(config.source, "role_arn", None)
    clients: dict[str, Any] = {}
    lock = threading.Lock()

    def client_for(region: str) -> Any:
        with lock:
            if region not in clients:
                clients[region] = aws_client("cloudtrail", region=region, role_arn=role)
            return clients[region]

    return cloudtrail_fetcher(client_for)
