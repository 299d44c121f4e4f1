"""Walking one chain of digests forward in time, judging each digest and each link.

Each digest names its predecessor (``previousDigestS3Object``), that digest's SHA-256
(``previousDigestHashValue``) and signature (``previousDigestSignature``), and all three are
covered by its own signature. Walking forward, one digest of state per chain is enough to see:

- a predecessor that should be there and is not (deleted digest);
- a predecessor that is not what its successor recorded (hash or signature differ);
- a chain that starts again (``previousDigestSignature`` null after the first digest seen):
  CloudTrail does that only when logging was stopped or validation turned off, so it is
  evidence of a StopLogging — reported as a warning, the way ``aws cloudtrail validate-logs``
  reports "No log files were delivered by CloudTrail between …";
- for a local copy without signature sidecars, a digest's signature taken from its successor.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric import rsa

from trailrelay.integrity.digests import ChainId, DigestDoc, DigestName, parse_digest_key
from trailrelay.integrity.report import Problem
from trailrelay.integrity.signing import signature_valid

__all__ = ["ChainWalker", "DigestCheck", "Link", "Status", "Verdict"]


class Status(StrEnum):
    """A digest's own check, before the chain is considered."""

    VALID = "valid"
    INVALID = "invalid"
    UNSIGNED = "unsigned"
    """No stored signature (a local copy without sidecar): the successor's may prove it."""


class Link(StrEnum):
    """How a digest joins its chain."""

    LINKED = "linked"
    """Its predecessor was seen and matches what it recorded."""
    START = "start"
    """The first digest of a chain (no predecessor)."""
    RESTART = "restart"
    """No predecessor although earlier digests of the chain exist: a gap."""
    CONTINUES = "continues"
    """Its predecessor is before the window."""
    BROKEN = "broken"
    """Its predecessor is missing or does not match."""


@dataclass(eq=False)
class DigestCheck:
    """One digest after loading and checking its own signature (what the chain walk consumes)."""

    name: DigestName
    location: str
    bucket: str
    doc: DigestDoc | None = None
    content_sha256: str | None = None
    signature: str | None = None
    status: Status = Status.INVALID
    problem: Problem | None = None
    public_key: rsa.RSAPublicKey | None = None
    key_problem: str = ""
    key_unavailable: bool = False
    """No key because ListPublicKeys could not be asked: the digest cannot be checked (not forged)."""
    message: bytes = b""
    """The signed string, kept while the signature is still to come from the successor."""


@dataclass(eq=False)
class Verdict:
    """A digest's final verdict; ``valid`` digests have their log files checked."""

    check: DigestCheck
    valid: bool
    link: Link = Link.START
    problems: list[Problem] = field(default_factory=list)


class ChainWalker:
    """Feeds one chain's digests in time order; returns verdicts as they become final."""

    def __init__(self, chain: ChainId, listed_from: dt.datetime | None) -> None:
        self.chain = chain
        self.listed_from = listed_from
        """Digests ending before this were not listed; a predecessor there is not expected."""
        self.last: DigestCheck | None = None
        self.pending: Verdict | None = None
        self.invalid: dict[str, DigestCheck] = {}
        """Digests that failed their own check since the last genuine one (already reported)."""
        self.seen = 0
        self.restarts = 0
        self.first_end: dt.datetime | None = None
        self.last_end: dt.datetime | None = None
        self.last_location: str | None = None
        self.gap_problems: list[Problem] = []
        """Chain problems not tied to one digest's verdict (missing digests, restarts)."""

    def feed(self, d: DigestCheck) -> list[Verdict]:
        """Take the next digest of the chain; the verdicts that became final."""
        out: list[Verdict] = []
        self.seen += 1
        self.first_end = self.first_end or d.name.end
        self.last_end = d.name.end
        self.last_location = d.location
        verdict = Verdict(d, valid=d.status is Status.VALID)
        if d.problem is not None or d.doc is None:
            # Its content is not authentic, so its links prove nothing: it is reported, and the
            # chain goes on from the last digest that may be genuine.
            if d.problem is not None:
                verdict.problems.append(d.problem)
            verdict.link = Link.BROKEN
            self.invalid[d.name.key] = d
            out.append(verdict)
            return out
        verdict.link = self._link(d, d.doc, verdict, out)
        self.invalid.clear()
        self.last = d
        if d.status is Status.UNSIGNED:
            self.pending = verdict
        else:
            out.append(verdict)
        return out

    def close(self) -> list[Verdict]:
        """The chain has no more digests: a digest still waiting for a signature has none."""
        if self.pending is None:
            return []
        pending, self.pending = self.pending, None
        return [self._unproven(pending)]

    def _link(self, d: DigestCheck, doc: DigestDoc, verdict: Verdict, out: list[Verdict]) -> Link:
        prev_key = doc.previous_digest_s3_object
        last, pending = self.last, self.pending
        self.pending = None
        if prev_key is None or doc.previous_digest_s3_bucket is None:
            if pending is not None:
                out.append(self._unproven(pending))
            if last is None:
                return Link.START
            self.restarts += 1
            gap_from = last.doc.digest_end_time if last.doc else _iso(last.name.end)
            self.gap_problems.append(
                self._problem(
                    "chain-restart",
                    d,
                    f"previousDigestSignature is null: CloudTrail started this chain again, so no log "
                    f"files were digested between {gap_from} and {doc.digest_start_time} (logging was "
                    "stopped or log file validation was turned off)",
                )
            )
            return Link.RESTART
        if last is not None and prev_key == last.name.key and doc.previous_digest_s3_bucket == last.bucket:
            if pending is not None:
                out.append(self._prove(pending, doc.previous_digest_signature))
            before = len(verdict.problems)
            self._compare(d, doc, last, pending, verdict)
            return Link.BROKEN if len(verdict.problems) > before else Link.LINKED
        if pending is not None:
            out.append(self._unproven(pending))
        if prev_key in self.invalid:
            return Link.BROKEN  # its predecessor is there but failed its own check (reported)
        prev_location = f"s3://{doc.previous_digest_s3_bucket}/{prev_key}"
        prev_name = parse_digest_key(prev_key)
        if last is not None and prev_name is not None and prev_name.end < last.name.end:
            verdict.problems.append(
                self._problem(
                    "digest-chain-mismatch",
                    d,
                    f"records {prev_location} as its predecessor, but {last.location} came after that",
                )
            )
            return Link.BROKEN
        if last is None and self.listed_from is None:
            # The oldest digest there is, yet it has a predecessor: older digests expired (a
            # lifecycle rule) or were deleted. Without a window nothing says which.
            self.gap_problems.append(
                self._problem(
                    "chain-truncated",
                    d,
                    f"its predecessor {prev_location} is not there (expired or deleted): nothing before "
                    f"{doc.digest_start_time} can be checked; give --start to require it",
                )
            )
            return Link.CONTINUES
        if prev_name is None or self.listed_from is None or prev_name.end >= self.listed_from:
            after = f" (the chain's previous digest seen is {last.location})" if last else ""
            self.gap_problems.append(
                Problem(
                    "digest-missing",
                    prev_location,
                    f"not found, but {d.location} records it as its predecessor{after}",
                    self.chain.folder.account,
                    self.chain.folder.region,
                    self.chain.trail,
                    prev_location,
                )
            )
            return Link.BROKEN
        return Link.CONTINUES

    def _compare(
        self, d: DigestCheck, doc: DigestDoc, last: DigestCheck, pending: Verdict | None, verdict: Verdict
    ) -> None:
        """The successor's record of its predecessor must match the predecessor (when that one is valid)."""
        if pending is not None and not pending.valid:
            return
        recorded = (doc.previous_digest_hash_value or "").lower()
        if last.content_sha256 is not None and recorded != last.content_sha256:
            verdict.problems.append(
                self._problem(
                    "digest-chain-mismatch",
                    d,
                    f"records SHA-256 {recorded or 'none'} for its predecessor {last.location}, which "
                    f"hashes to {last.content_sha256}",
                )
            )
        if last.signature is not None and doc.previous_digest_signature != last.signature:
            verdict.problems.append(
                self._problem(
                    "digest-chain-mismatch",
                    d,
                    f"records a different signature for its predecessor {last.location} than the one stored",
                )
            )

    def _prove(self, pending: Verdict, signature: str | None) -> Verdict:
        """Check a digest without stored signature against the signature its successor recorded."""
        check = pending.check
        if signature is None:
            return self._unproven(pending)
        if check.public_key is None:
            pending.valid = False
            kind = "digest-key-unavailable" if check.key_unavailable else "digest-unknown-key"
            pending.problems.append(self._problem(kind, check, check.key_problem))
            return pending
        check.signature = signature
        if signature_valid(check.public_key, signature, check.message):
            pending.valid = True
            check.status = Status.VALID
        else:
            pending.valid = False
            check.status = Status.INVALID
            pending.problems.append(
                self._problem(
                    "digest-signature-invalid",
                    check,
                    "the signature its successor records for it does not verify (content altered)",
                )
            )
        return pending

    def _unproven(self, pending: Verdict) -> Verdict:
        pending.valid = False
        pending.check.status = Status.INVALID
        pending.problems.append(
            self._problem(
                "digest-signature-missing",
                pending.check,
                "no stored signature (no .s3-metadata sidecar) and no next digest records one: copy "
                "the trail with `trailrelay mirror` to keep the newest digest's signature",
            )
        )
        return pending

    def _problem(self, kind: str, d: DigestCheck, detail: str) -> Problem:
        folder = self.chain.folder
        return Problem(kind, d.location, detail, folder.account, folder.region, self.chain.trail, d.location)


def _iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
