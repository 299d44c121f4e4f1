"""CloudTrail's public keys, by the fingerprint a digest names in ``digestPublicKeyFingerprint``.

A fingerprint is the hex MD5 of the key's DER PKCS#1 bytes, as ListPublicKeys returns them (the
AWS CLI's own ``list-public-keys`` example: ``7f3f4014…`` is the MD5 of the ``Value`` shown). A key
is used only when its fingerprint is the one it is filed under, so a key file that is not the
key it claims to be is refused, wherever it comes from.

Keys come from three places, and the report names which one each used key came from:

- ``file``: ``--public-key FINGERPRINT=FILE`` (DER PKCS#1, its base64 text, or PEM), given by the
  user and trusted as given (CloudTrail is then not asked);
- ``cloudtrail``: ListPublicKeys in the digest's region (CloudTrail signs with one key pair per
  region), fetched once per region for the window and cached; a fingerprint still unknown is
  looked up once more around the digest's own time (keys rotate), then remembered as unknown;
- ``mirror``: ``FINGERPRINT.der`` files saved inside a ``trailrelay mirror`` copy. Whoever can
  write the mirror can plant a key there and re-sign digests with it, so when ListPublicKeys can
  be reached it is the authority: a mirror key it does not list is refused, one it lists is
  confirmed. Offline (or when ListPublicKeys fails) a mirror key is used, and the report says
  the verdict rests on keys from the mirror itself.

When ListPublicKeys fails (no permission, no network) before it could say whether it lists a
key, and no other source has that key, the key is *unavailable*: its digests cannot be checked,
which is not evidence of forgery. A key ListPublicKeys answered about and does not list is
*unknown*: its digests fail.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from trailrelay.errors import ConfigError

__all__ = [
    "CLOUDTRAIL",
    "FILE",
    "MIRROR",
    "KeyFetcher",
    "KeyFileError",
    "KeyRing",
    "LoadedKey",
    "MirrorKeys",
    "PublicKeyInfo",
    "cloudtrail_fetcher",
    "fingerprint_of",
    "load_key_dir",
    "load_public_key",
    "parse_key_option",
]

FILE = "file"
"""A key the user gave (``--public-key``, ``integrity.public_keys``): trusted as given."""
CLOUDTRAIL = "cloudtrail"
"""A key CloudTrail's ListPublicKeys returned."""
MIRROR = "mirror"
"""A key file found inside the copy being verified: trusted only when CloudTrail confirms it."""

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


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A usable public key and where it came from (``file``, ``cloudtrail`` or ``mirror``)."""

    key: rsa.RSAPublicKey
    source: str
    where: str = ""
    """The file, or the region whose ListPublicKeys returned it."""


@dataclass(frozen=True, slots=True)
class MirrorKeys:
    """The key files of a mirror whose fingerprint is their name, and why the others were refused."""

    keys: dict[str, LoadedKey] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


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


def fingerprint_of(key: rsa.RSAPublicKey) -> str:
    """CloudTrail's fingerprint of ``key``: the hex MD5 of its DER PKCS#1 encoding."""
    der = key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    return hashlib.md5(der, usedforsecurity=False).hexdigest()


def parse_key_option(spec: str) -> tuple[str, rsa.RSAPublicKey]:
    """``FINGERPRINT=FILE`` → (fingerprint, key); KeyFileError naming the file when unusable.

    The file's key must have that fingerprint: a key file that is not the key it is given for is
    refused, not used to fail (or pass) every signature.
    """
    fingerprint, sep, path = spec.partition("=")
    fingerprint = fingerprint.strip().lower()
    if not sep or not fingerprint or not path:
        raise KeyFileError(f"--public-key wants FINGERPRINT=FILE, got {spec!r}")
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise KeyFileError(f"--public-key {fingerprint}: cannot read {path}: {exc.strerror}") from None
    try:
        key = load_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"--public-key {fingerprint}: {path}: {exc}") from None
    actual = fingerprint_of(key)
    if actual != fingerprint:
        raise KeyFileError(
            f"--public-key {fingerprint}: {path} holds the key with fingerprint {actual} (MD5 of its DER "
            f"PKCS#1 form, as CloudTrail computes it), not {fingerprint}"
        )
    return fingerprint, key


def load_key_dir(folder: Path) -> MirrorKeys:
    """Every ``FINGERPRINT.der`` below ``folder`` (as ``trailrelay mirror`` saves them) that is that key.

    A file that cannot be read, or whose key has another fingerprint than its name, is refused
    and named in ``refused``.
    """
    found = MirrorKeys()
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.der")):
        claimed = path.stem.lower()
        try:
            key = load_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            found.refused.append(f"mirror key file {path} is not used: {exc}")
            continue
        actual = fingerprint_of(key)
        if actual != claimed:
            found.refused.append(
                f"mirror key file {path} is not used: its key's fingerprint is {actual}, not the "
                f"{claimed} its name claims"
            )
            continue
        found.keys[claimed] = LoadedKey(key, MIRROR, str(path))
    return found


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
    """Public keys by fingerprint: given ones, then ListPublicKeys per region, then the mirror's.

    Safe to use from several threads; each region's keys are fetched once. ``used()`` says which
    key verified which digests and where it came from.
    """

    def __init__(
        self,
        static: Mapping[str, rsa.RSAPublicKey | LoadedKey] | None = None,
        fetcher: KeyFetcher | None = None,
        *,
        mirror: MirrorKeys | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> None:
        self._given: dict[str, LoadedKey] = {
            fp.lower(): k if isinstance(k, LoadedKey) else LoadedKey(k, FILE)
            for fp, k in (static or {}).items()
        }
        self._cloudtrail: dict[str, LoadedKey] = {}
        self._mirror: dict[str, LoadedKey] = dict(mirror.keys) if mirror else {}
        self._fetcher = fetcher
        self._start, self._end = start, end
        self._lock = threading.Lock()
        self._regions_done: set[str] = set()
        self._asked: set[tuple[str, str]] = set()
        """(region, fingerprint) ListPublicKeys answered about around the digest's time."""
        self._unreachable: dict[str, str] = {}
        self._errors: dict[str, str] = {}
        self._notes: list[str] = list(mirror.refused) if mirror else []
        self._used: dict[str, dict[str, Any]] = {}
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
            found, why = self._find(fp, region, when)
            if found is None:
                return None, why
            self._use(fp, region, found)
            return found.key, ""

    def _find(self, fp: str, region: str, when: dt.datetime) -> tuple[LoadedKey | None, str]:
        given = self._given.get(fp)
        if given is not None:
            return given, ""
        mirrored = self._mirror.get(fp)
        if self._fetcher is None:
            return (mirrored, "") if mirrored else (None, self._why_unknown(fp, region))
        self._fetch_window(region, when)
        asked = (region, fp) in self._asked
        if fp not in self._cloudtrail and not asked and region not in self._unreachable:
            asked = self._fetch(region, when - _WINDOW_BEFORE - dt.timedelta(hours=1), when + _WINDOW_BEFORE)
            if asked:
                self._asked.add((region, fp))
        listed = self._cloudtrail.get(fp)
        if listed is not None:
            if mirrored is not None and mirrored.key.public_numbers() != listed.key.public_numbers():
                self._note(f"mirror key file {mirrored.where} differs from CloudTrail's key {fp}: not used")
            return listed, ""
        if not asked:  # ListPublicKeys failed before it could say whether it lists this key
            if mirrored is not None:  # nothing better to go on; the report says so
                return mirrored, ""
            return None, (
                f"key {fp} could not be fetched ({self._unreachable[region]}), so this digest cannot be "
                f"checked: give the key with --public-key {fp}=FILE, or verify a `trailrelay mirror` "
                "copy that saved it"
            )
        if mirrored is not None:
            return None, (
                f"the mirror holds a key file for fingerprint {fp} ({mirrored.where}), but CloudTrail's "
                f"ListPublicKeys in {region} does not list that key: not trusted (planted in the mirror?)"
            )
        return None, self._why_unknown(fp, region)

    def _use(self, fp: str, region: str, found: LoadedKey) -> None:
        entry = self._used.get(fp)
        if entry is None:
            confirmed = found.source == CLOUDTRAIL
            entry = self._used[fp] = {
                "fingerprint": fp,
                "region": region,
                "source": found.source,
                "where": found.where,
                "confirmed_by_cloudtrail": confirmed,
                "mirror_copy": self._mirror[fp].where if confirmed and fp in self._mirror else None,
                "digests": 0,
            }
            if found.source == MIRROR and region in self._unreachable:
                self._note(
                    f"key {fp} was taken from the mirror ({found.where}) without confirmation: "
                    f"{self._unreachable[region]}"
                )
        entry["digests"] += 1

    def unavailable(self, fingerprint: str, region: str) -> bool:
        """True when ListPublicKeys in ``region`` failed before it could say whether it lists the key.

        A digest signed with such a key cannot be checked, which proves nothing either way; a key
        that ListPublicKeys answered about and does not list is unknown (a forged digest?).
        """
        with self._lock:
            return (
                self._fetcher is not None
                and region in self._unreachable
                and (region, fingerprint.lower()) not in self._asked
            )

    def used(self) -> list[dict[str, Any]]:
        """Each key that was used: fingerprint, region, source, where, confirmed, digests it checked."""
        with self._lock:
            return [dict(v) for _, v in sorted(self._used.items())]

    def errors(self) -> list[str]:
        """Why ListPublicKeys failed, per region, and key files that were refused (empty when none)."""
        with self._lock:
            return sorted(self._errors.values()) + list(self._notes)

    def _note(self, text: str) -> None:
        if text not in self._notes:
            self._notes.append(text)

    def _fetch_window(self, region: str, when: dt.datetime) -> None:
        if region in self._regions_done:
            return
        self._regions_done.add(region)
        start = (self._start or when) - _WINDOW_BEFORE
        end = (self._end or when) + _WINDOW_AFTER
        self._fetch(region, start, end)

    def _fetch(self, region: str, start: dt.datetime, end: dt.datetime) -> bool:
        """Ask ListPublicKeys; False when it could not answer (the region is then unreachable)."""
        assert self._fetcher is not None
        try:
            infos = self._fetcher(region, start, end)
        except Exception as exc:  # no permission, no network: the digests say which key is missing
            first_line = next(iter(str(exc).strip().splitlines()), "")  # an HTML error page would follow
            why = f"ListPublicKeys in {region} failed: {type(exc).__name__}: {first_line}"
            self._errors[region] = self._unreachable[region] = why
            return False
        for info in infos:
            if info.fingerprint in self._cloudtrail:
                continue
            try:
                key = load_public_key(info.der)
            except ValueError:
                self._errors[region] = (
                    f"ListPublicKeys in {region} returned an unreadable key {info.fingerprint}"
                )
                continue
            actual = fingerprint_of(key)
            if info.fingerprint not in (actual, hashlib.md5(info.der, usedforsecurity=False).hexdigest()):
                self._errors[region] = (
                    f"ListPublicKeys in {region} returned key {info.fingerprint} whose fingerprint is "
                    f"{actual}: not used"
                )
                continue
            self._cloudtrail[info.fingerprint] = LoadedKey(key, CLOUDTRAIL, f"ListPublicKeys in {region}")
            self.fetched.append(info)
        return True

    def _why_unknown(self, fp: str, region: str) -> str:
        if region in self._errors and region not in self._unreachable:  # a key it returned was refused
            return self._errors[region]
        if self._fetcher is None:
            where = " or in the mirror" if self._mirror else ""
            return (
                f"no public key with fingerprint {fp} was given (--public-key){where}, and CloudTrail "
                "is not asked"
            )
        return f"CloudTrail's ListPublicKeys in {region} has no key with fingerprint {fp}"
