"""How CloudTrail signs a digest, and the check of one signature.

The signed string is four lines joined by newlines: the digest's ``digestEndTime`` exactly as written in
the digest (UTC, extended ISO 8601, e.g. ``2015-08-17T15:01:31Z``); ``digestS3Bucket/digestS3Object``;
the hex SHA-256 of the *uncompressed* digest file; and ``previousDigestSignature``, or the four
characters ``null`` in a chain's first digest. The signature is SHA256withRSA (RSASSA-PKCS1-v1_5
with SHA-256), hex-encoded in the object's ``x-amz-meta-signature``. Sources: the CloudTrail user
guide ("Custom implementations of CloudTrail log file integrity validation") and the AWS CLI's
``customizations/cloudtrail/validation.py`` (``_create_string_to_sign``).
"""

from __future__ import annotations

import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trailrelay.integrity.digests import DigestDoc

__all__ = ["SIGNATURE_ALGORITHM", "sign", "signature_valid", "signing_string"]

SIGNATURE_ALGORITHM = "SHA256withRSA"
"""The only algorithm CloudTrail uses (``x-amz-meta-signature-algorithm``)."""


def signing_string(doc: DigestDoc, content_sha256: str) -> bytes:
    """The bytes CloudTrail signed for a digest whose uncompressed content hashes to ``content_sha256``."""
    previous = doc.previous_digest_signature if doc.previous_digest_signature is not None else "null"
    text = (
        f"{doc.digest_end_time}\n{doc.digest_s3_bucket}/{doc.digest_s3_object}\n{content_sha256}\n{previous}"
    )
    return text.encode()


def signature_valid(key: rsa.RSAPublicKey, signature_hex: str, message: bytes) -> bool:
    """True when ``signature_hex`` is a valid SHA256withRSA signature of ``message`` under ``key``."""
    try:
        signature = binascii.unhexlify(signature_hex)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """The hex SHA256withRSA signature of ``message``, as CloudTrail writes it (test trails, benchmarks)."""
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256()).hex()
