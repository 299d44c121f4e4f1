"""CloudTrail's public keys, by the fingerprint a digest names in ``digestPublicKeyFingerprint``.

Keys come from files (``--public-key FINGERPRINT=FILE``: the DER PKCS#1 bytes exactly as
ListPublicKeys returns them, their base64 text, or PEM) or from CloudTrail's ListPublicKeys in
the digest's region (CloudTrail signs with one key pair per region), fetched once per region
for the window and cached; a fingerprint still unknown is looked up once more around the
digest's own time (keys rotate), then remembered as unknown.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from trailrelay.errors import ConfigError

__all__ = [
    "KeyFetcher",
    "KeyFileError",
    "KeyRing",
    "PublicKeyInfo",
    "cloudtrail_fetcher",
    "load_key_dir",
    "load_public_key",
    "parse_key_option",
]

_WINDOW_BEFORE = dt.timedelta(hours=1)
_WINDOW_AFTER = dt.timedelta(hours=2)
"""The AWS CLI asks for the keys of [start, end + 2h]: digests of the window's last hour end later."""


class KeyFileError(ConfigError):
    """A ``--public-key`` option or key file that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class PublicKeyInfo:
    """One public key as ListPublicKeys describes it."""

    fingerprint: str
    der: bytes
    region: str
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None


class KeyFetcher(Protocol):
    """Returns the public keys CloudTrail used in ``region`` between ``start`` and ``end``."""

    def __call__(self, region: str, start: dt.datetime, end: dt.datetime) -> list[PublicKeyInfo]:
        """The keys of that region and time range."""
        ...


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM, DER (PKCS#1 or SubjectPublicKeyInfo) or base64 text of DER."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key: Any = load_pem_public_key(text)
        else:
            try:
                key = load_der_public_key(data)
            except ValueError:
                key = load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"not an RSA public key in PEM, DER or base64 DER ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"not an RSA key ({type(key).__name__})")  # noqa: TRY004 - callers treat any unusable key alike
    return key


def parse_key_option(spec: str) -> tuple[str, rsa.RSAPublicKey]:
    """``FINGERPRINT=FILE`` → (fingerprint, key); KeyFileError naming the file when unusable."""
    fingerprint, sep, path = spec.partition("=")
    fingerprint = fingerprint.strip().lower()
    if not sep or not fingerprint or not path:
        raise KeyFileError(f"--public-key wants FINGERPRINT=FILE, got {spec!r}")
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise KeyFileError(f"--public-key {fingerprint}: cannot read {path}: {exc.strerror}") from None
    try:
        return fingerprint, load_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"--public-key {fingerprint}: {path}: {exc}") from None


def load_key_dir(folder: Path) -> dict[str, rsa.RSAPublicKey]:
    """Every ``FINGERPRINT.der`` below ``folder`` (as ``trailrelay mirror`` saves them); bad ones skipped."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    if not folder.is_dir():
        return keys
    for path in sorted(folder.rglob("*.der")):
        try:
            keys[path.stem.lower()] = load_public_key(path.read_bytes())
        except (OSError, ValueError):
            continue
    return keys


def cloudtrail_fetcher(client_for: Callable[[str], Any]) -> KeyFetcher:
    """A fetcher calling ListPublicKeys with ``client_for(region)`` (a boto3 CloudTrail client)."""

    def fetch(region: str, start: dt.datetime, end: dt.datetime) -> list[PublicKeyInfo]:
        client = client_for(region)
        out: list[PublicKeyInfo] = []
        kwargs: dict[str, Any] = {"StartTime": start, "EndTime": end}
        while True:
            resp = client.list_public_keys(**kwargs)
            for item in resp.get("PublicKeyList", []):
                value = item.get("Value")
                fingerprint = item.get("Fingerprint")
                if not isinstance(value, bytes) or not isinstance(fingerprint, str):
                    continue
                out.append(
                    PublicKeyInfo(
                        fingerprint.lower(),
                        value,
                        region,
                        item.get("ValidityStartTime"),
                        item.get("ValidityEndTime"),
                    )
                )
            token = resp.get("NextToken")
            if not token:
                return out
            kwargs["NextToken"] = token

    return fetch


class KeyRing:
    """Public keys by fingerprint: given ones first, then ListPublicKeys per region, cached.

    Safe to use from several threads; each region's keys are fetched once.
    """

    def __init__(
        self,
        static: dict[str, rsa.RSAPublicKey] | None = None,
        fetcher: KeyFetcher | None = None,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> None:
        self._keys: dict[str, rsa.RSAPublicKey] = {fp.lower(): k for fp, k in (static or {}).items()}
        self._fetcher = fetcher
        self._start, self._end = start, end
        self._lock = threading.Lock()
        self._regions_done: set[str] = set()
        self._missed: set[tuple[str, str]] = set()
        self._errors: dict[str, str] = {}
        self.fetched: list[PublicKeyInfo] = []
        """Every key fetched from CloudTrail (``mirror`` saves them for offline use)."""

    @property
    def can_fetch(self) -> bool:
        """True when unknown fingerprints are looked up in CloudTrail."""
        return self._fetcher is not None

    def lookup(self, fingerprint: str, region: str, when: dt.datetime) -> tuple[rsa.RSAPublicKey | None, str]:
        """The key for ``fingerprint`` (a digest of ``region`` ending at ``when``), or None and why."""
        fp = fingerprint.lower()
        with self._lock:
            key = self._keys.get(fp)
            if key is not None or self._fetcher is None:
                return key, "" if key else self._why_unknown(fp, region)
            self._fetch_window(region, when)
            if fp not in self._keys and (region, fp) not in self._missed:
                self._missed.add((region, fp))
                self._fetch(region, when - _WINDOW_BEFORE - dt.timedelta(hours=1), when + _WINDOW_BEFORE)
            key = self._keys.get(fp)
            return key, "" if key else self._why_unknown(fp, region)

    def prefetch(self, regions: Iterable[str], when: dt.datetime) -> None:
        """Fetch the window's keys of ``regions`` now (``mirror`` saves them for offline use)."""
        if self._fetcher is None:
            return
        with self._lock:
            for region in regions:
                self._fetch_window(region, when)

    def errors(self) -> list[str]:
        """Why ListPublicKeys failed, per region (empty when it never did)."""
        with self._lock:
            return sorted(self._errors.values())

    def _fetch_window(self, region: str, when: dt.datetime) -> None:
        if region in self._regions_done:
            return
        self._regions_done.add(region)
        start = (self._start or when) - _WINDOW_BEFORE
        end = (self._end or when) + _WINDOW_AFTER
        self._fetch(region, start, end)

    def _fetch(self, region: str, start: dt.datetime, end: dt.datetime) -> None:
        assert self._fetcher is not None
        try:
            infos = self._fetcher(region, start, end)
        except Exception as exc:  # no permission, no network: the digests say which key is missing
            self._errors[region] = f"ListPublicKeys in {region} failed: {type(exc).__name__}: {exc}"
            return
        for info in infos:
            if info.fingerprint in self._keys:
                continue
            try:
                self._keys[info.fingerprint] = load_public_key(info.der)
            except ValueError:
                self._errors[region] = (
                    f"ListPublicKeys in {region} returned an unreadable key {info.fingerprint}"
                )
                continue
            self.fetched.append(info)

    def _why_unknown(self, fp: str, region: str) -> str:
        if region in self._errors:
            return self._errors[region]
        if self._fetcher is None:
            return f"no public key with fingerprint {fp} was given (--public-key) and CloudTrail is not asked"
        return f"CloudTrail's ListPublicKeys in {region} has no key with fingerprint {fp}"
