"""The ``[privacy]`` table: the key, named profiles of field rules, and which sink gets which.

Which profile a sink gets: ``sinks.<sink name>`` when the sink is listed there (a profile name,
or ``"none"`` for the unchanged events), otherwise ``default`` (when set), otherwise none.
So ``default = "standard"`` protects every sink including ones added later, and
``[privacy.sinks] archive = "none"`` exempts one; or leave ``default`` unset and list only the
sink that needs it (e.g. a SIEM hosted outside the country). The whole policy sits in one
table that a reviewer can read, and sink tables (owned by each connector) stay unchanged.
A name in ``[privacy.sinks]`` that is not a configured sink is an error, not a silent no-op.
The Lambda's Firehose data transformation, whose answer to Firehose takes the place of the
sinks, counts as a sink named ``firehose-transformation`` (:data:`TRANSFORMATION`): it gets
``default`` too, or its own entry.

Example: everything to the EU Splunk as it is; the SIEM hosted abroad gets pseudonyms::

    [privacy]
    key_env = "TRAILRELAY_PSEUDONYM_KEY"      # or key_file / key_secret_arn / key_kms_ciphertext
    [privacy.sinks]
    siem-us = "outside-eu"

    [privacy.profiles.outside-eu]
    fields = [
      { path = "sourceIPAddress", method = "truncate" },            # /24, /48 (ipv4_prefix, ipv6_prefix)
      { path = "userIdentity.userName", method = "pseudonymize" },
      { path = "userIdentity.arn", method = "principal" },          # .../user/<token>, role kept
      { path = "requestParameters.userName", method = "pseudonymize" },
      { path = "userIdentity.accessKeyId", method = "drop" },
    ]
    emails = ["requestParameters", "responseElements"]              # e-mails inside any string

The built-in profile ``standard`` (:data:`STANDARD_PROFILE`) can be named without defining it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from trailrelay.errors import ConfigError
from trailrelay.settings import Meta, Settings, field

__all__ = [
    "NONE",
    "STANDARD_PROFILE",
    "TRANSFORMATION",
    "FieldRule",
    "KeySettings",
    "PrivacyConfig",
    "PrivacyProfile",
    "parse_path",
]

NONE = "none"
"""The profile name that means: this sink gets the events unchanged."""
TRANSFORMATION = "firehose-transformation"
"""The sink name of the Lambda's Firehose data transformation (its answer to Firehose)."""

KEY_SOURCES = ("key_env", "key_file", "key_secret_arn", "key_kms_ciphertext")
METHODS = ("pseudonymize", "principal", "arns", "truncate", "drop")

_WHY_NOT_UNKEYED = (
    "plain (unkeyed) hashing is not offered: the values it would hide come from small, "
    "enumerable sets, so anyone can hash every candidate and look the result up. All 2^32 "
    "IPv4 addresses hash in about 40 minutes of plain Python on one core, minutes with "
    "optimized code and about a second on a GPU; user names and e-mail addresses fall to "
    "dictionaries just as fast"
)
UNKEYED_REFUSAL = (
    f"{_WHY_NOT_UNKEYED}. Use method = 'pseudonymize' (HMAC-SHA256 with a secret key from "
    "key_env, key_file, key_secret_arn or key_kms_ciphertext), 'truncate' or 'drop'"
)
_UNKEYED = frozenset({"hash", "sha256", "sha-256", "sha1", "sha-1", "md5", "sha512", "unkeyed", "digest"})


def parse_path(path: str) -> tuple[str, ...]:
    r"""Split a field path on dots (``\\.`` is a literal dot); ``*`` is any key or list element."""
    parts: list[str] = []
    cur: list[str] = []
    chars = iter(path)
    for ch in chars:
        if ch == "\\":
            cur.append(next(chars, "\\"))
        elif ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    if any(p == "" for p in parts):
        raise ValueError(f"field path {path!r} has an empty segment")
    return tuple(parts)


class FieldRule(Settings):
    """One field path and what to do with its value."""

    path: Annotated[
        str, Meta(description="Dot path, e.g. userIdentity.userName; '*' = any key or list element.")
    ]
    method: Annotated[
        str,
        Meta(
            description="pseudonymize (keyed HMAC token), principal (token for the person part of an ARN or "
            "principal id), arns (principal for every ARN inside a text, e.g. errorMessage), truncate "
            "(IP prefix of every address in the value), drop (remove the field)."
        ),
    ]
    ipv4_prefix: Annotated[
        int, Meta(ge=0, le=32, description="Bits of an IPv4 address kept by truncate.")
    ] = 24
    ipv6_prefix: Annotated[
        int, Meta(ge=0, le=128, description="Bits of an IPv6 address kept by truncate.")
    ] = 48
    domain: Annotated[
        str,
        Meta(
            max_length=64,
            description="Pseudonym domain. Rules with the same domain (default: the shared one) give "
            "the same value the same token; a separate domain makes this field unlinkable to the others.",
        ),
    ] = ""

    def __post_init__(self) -> None:
        if self.method.lower() in _UNKEYED:
            raise ValueError(UNKEYED_REFUSAL)
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        parse_path(self.path)

    @property
    def keys(self) -> tuple[str, ...]:
        """The path split into keys."""
        return parse_path(self.path)

    @property
    def keyed(self) -> bool:
        """True when the method needs the secret key."""
        return self.method in ("pseudonymize", "principal", "arns")


class PrivacyProfile(Settings):
    """A named set of field rules, plus subtrees scanned for e-mail addresses."""

    fields: list[FieldRule] = field(default_factory=list)
    emails: Annotated[
        list[str],
        Meta(
            description="Paths of subtrees (e.g. requestParameters; '*' = the whole event) in which every "
            "e-mail address inside a string value is replaced by its pseudonym."
        ),
    ] = field(default_factory=list)

    def __post_init__(self) -> None:
        for p in self.emails:
            parse_path(p)
        seen: set[str] = set()
        for rule in self.fields:
            if rule.path in seen:
                raise ValueError(f"field {rule.path!r} has more than one rule")
            seen.add(rule.path)
        if not self.fields and not self.emails:
            raise ValueError("a profile needs at least one field rule or e-mail subtree")

    @property
    def keyed(self) -> bool:
        """True when some rule needs the secret key."""
        return bool(self.emails) or any(r.keyed for r in self.fields)


STANDARD_PROFILE = PrivacyProfile(
    fields=[
        FieldRule(path="sourceIPAddress", method="truncate"),
        FieldRule(path="userIdentity.userName", method="pseudonymize"),
        FieldRule(path="userIdentity.principalId", method="principal"),
        FieldRule(path="userIdentity.arn", method="principal"),
        FieldRule(path="userIdentity.sessionContext.sessionIssuer.userName", method="pseudonymize"),
        FieldRule(path="userIdentity.sessionContext.sessionIssuer.principalId", method="principal"),
        FieldRule(path="userIdentity.sessionContext.sessionIssuer.arn", method="principal"),
        FieldRule(path="userIdentity.sessionContext.sourceIdentity", method="pseudonymize"),
        FieldRule(path="userIdentity.onBehalfOf.userId", method="pseudonymize"),
        FieldRule(path="requestParameters.userName", method="pseudonymize"),
        FieldRule(path="requestParameters.roleSessionName", method="pseudonymize"),
        FieldRule(path="requestParameters.sourceIdentity", method="pseudonymize"),
        FieldRule(path="responseElements.user.userName", method="pseudonymize"),
        FieldRule(path="responseElements.user.arn", method="principal"),
        FieldRule(path="responseElements.accessKey.userName", method="pseudonymize"),
        FieldRule(path="responseElements.loginProfile.userName", method="pseudonymize"),
        FieldRule(path="responseElements.assumedRoleUser.arn", method="principal"),
        FieldRule(path="responseElements.assumedRoleUser.assumedRoleId", method="principal"),
        FieldRule(path="responseElements.federatedUser.arn", method="principal"),
        FieldRule(path="responseElements.federatedUser.federatedUserId", method="principal"),
        FieldRule(path="responseElements.subject", method="pseudonymize"),
        FieldRule(path="responseElements.subjectFromWebIdentityToken", method="pseudonymize"),
        FieldRule(path="responseElements.sourceIdentity", method="pseudonymize"),
        FieldRule(path="additionalEventData.UserName", method="pseudonymize"),
        FieldRule(path="errorMessage", method="arns"),
    ],
    emails=[
        "userIdentity",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "serviceEventDetails",
        "insightDetails",
        "errorMessage",
        "userAgent",
    ],
)
"""The built-in profile ``standard``: IPs to /24 (/48), people's names and e-mails to tokens.

Names: the caller's (``userIdentity``, its session issuer, which for a federated user is an IAM
user, its source identity, and the IAM Identity Center user it acts for,
``onBehalfOf.userId``), the user a call creates or names (``userName`` in the request, the
created user, access key and login profile), the sessions and federated users STS hands out
(``roleSessionName``, ``assumedRoleUser``, ``federatedUser``, the ``sourceIdentity`` it
answers), and the SAML or web identity user STS answers for (``responseElements.subject``,
``subjectFromWebIdentityToken``: the value of that call's ``userIdentity.userName``, so its
token too). Roles stay readable in ARNs and unique ids, but ``sessionIssuer.userName`` is a
token for a role too (the role is still in ``sessionIssuer.arn``). In ``errorMessage`` (free
text) the person part of every ARN and every e-mail address is tokenized. What stays as
written: a name the text gives without an ARN (``Login Profile for User alice cannot be …``),
other free text, and fields outside these paths, e.g. the ``name`` GetFederationToken is called
with, an SSM session id that starts with the session's name, a user's ARN in
``responseElements.profile.createdBy`` or a policy document, or the MFA device ARN of a console
sign-in (``additionalEventData.MFAIdentifier``, named by whoever set the device up). Access key
ids stay as they are: security teams revoke keys by id (a profile of your own can drop
``userIdentity.accessKeyId``). A profile of your own can add ``{ path = "responseElements",
method = "arns" }`` (every ARN anywhere below it) at the cost of another pass over that
subtree.
"""


class KeySettings(Settings):
    """Where the pseudonymization key comes from (at most one source)."""

    key_env: Annotated[str | None, Meta(description="Environment variable holding the key.")] = None
    key_file: Annotated[Path | None, Meta(description="File holding the key (relative to the config).")] = (
        None
    )
    key_secret_arn: Annotated[str | None, Meta(description="AWS Secrets Manager secret (ARN or name).")] = (
        None
    )
    key_secret_json_key: Annotated[
        str | None, Meta(description="When the secret is a JSON object: the member holding the key.")
    ] = None
    key_kms_ciphertext: Annotated[
        str | None,
        Meta(description="Base64 KMS ciphertext of the key, decrypted with kms:Decrypt at start-up."),
    ] = None
    key_kms_context: Annotated[dict[str, str], Meta(description="KMS encryption context.")] = field(
        default_factory=dict
    )
    key_region: Annotated[str | None, Meta(description="Region for Secrets Manager / KMS.")] = None
    key_encoding: Annotated[
        Literal["raw", "base64", "hex"],
        Meta(description="How the key material is written: raw bytes/text, base64 or hex."),
    ] = "raw"

    def __post_init__(self) -> None:
        sources = [n for n in KEY_SOURCES if getattr(self, n) is not None]
        if len(sources) > 1:
            raise ValueError(f"give one key source, not {', '.join(sources)}")
        if self.key_secret_json_key and not self.key_secret_arn:
            raise ValueError("key_secret_json_key needs key_secret_arn")
        if self.key_kms_context and not self.key_kms_ciphertext:
            raise ValueError("key_kms_context needs key_kms_ciphertext")

    @property
    def key_source(self) -> str | None:
        """Which key setting is used (``key_env`` …), for messages; None when there is none."""
        for n in KEY_SOURCES:
            if getattr(self, n) is not None:
                return n
        return None


class PrivacyConfig(KeySettings):
    """The ``[privacy]`` table: one key, named profiles, and the sink → profile rule."""

    default: Annotated[str | None, Meta(description="Profile for sinks not listed in sinks.")] = None
    sinks: Annotated[dict[str, str], Meta(description="Sink name → profile name or 'none'.")] = field(
        default_factory=dict
    )
    profiles: dict[str, PrivacyProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if NONE in self.profiles:
            raise ValueError(f"{NONE!r} is reserved (it means: no privacy profile)")
        known = {"standard", *self.profiles}
        for where, name in [("default", self.default), *((f"sinks.{s}", p) for s, p in self.sinks.items())]:
            if name is not None and name != NONE and name not in known:
                raise ValueError(f"{where}: no profile named {name!r} (have {', '.join(sorted(known))})")
        used = self.used_profiles()
        if not used:
            raise ValueError(
                "no sink gets a profile: set default = '<profile>' or name sinks in privacy.sinks"
            )
        if self.key_source is None and any(self.profile(n).keyed for n in used | set(self.profiles)):
            raise ValueError(
                "pseudonymization needs a secret key of at least 32 random bytes: set key_env, "
                f"key_file, key_secret_arn or key_kms_ciphertext ({_WHY_NOT_UNKEYED})"
            )

    def profile(self, name: str) -> PrivacyProfile:
        """The profile of that name (``standard`` is built in unless redefined)."""
        if name in self.profiles:
            return self.profiles[name]
        if name == "standard":
            return STANDARD_PROFILE
        raise KeyError(name)

    def profile_for(self, sink: str) -> str | None:
        """The profile name a sink gets: its entry in ``sinks``, else ``default``; None for none."""
        name = self.sinks.get(sink, self.default)
        return None if name in (None, NONE) else name

    def used_profiles(self) -> set[str]:
        """Profile names some sink may get (``default`` and the values of ``sinks``)."""
        names = {self.default, *self.sinks.values()} - {None, NONE}
        return {n for n in names if n is not None}

    def domains(self) -> set[str]:
        """Every pseudonym domain the profiles use (for ``reveal``)."""
        out = {""}
        for name in self.used_profiles() | set(self.profiles):
            out.update(r.domain for r in self.profile(name).fields)
        return out

    def check_sinks(self, names: Iterable[str]) -> None:
        """Refuse ``[privacy.sinks]`` entries that name no configured sink (a typo leaks data)."""
        have = set(names)
        unknown = sorted(set(self.sinks) - have - {TRANSFORMATION})
        if unknown:
            raise ConfigError(
                f"privacy.sinks: no sink named {', '.join(map(repr, unknown))} "
                f"(sinks are {', '.join(map(repr, sorted(have)))})"
            )
