"""CloudTrail log file integrity: digest-chain validation, offline (a mirror) or on S3.

CloudTrail delivers an hourly *digest* per account, region and trail that lists the SHA-256 of
every log file it delivered in that hour, the SHA-256 and signature of the previous digest, and
is itself signed (SHA256withRSA, signature in the object's ``x-amz-meta-signature``). This
package checks those signatures, walks each chain in time order, hashes each listed log file and
reports what was modified, deleted, added or never covered, and where the chain was restarted.

Modules: ``digests`` (names and documents), ``signing`` (the signing string, RSA check),
``keys`` (public keys by fingerprint), ``hashing`` (log file SHA-256), ``store`` (S3 or a local
mirror), ``chain`` (the chain walk), ``verifier`` (the whole run), ``report`` (findings, output),
``events`` (integrity events for a SIEM), ``mirror`` (download with signature sidecars),
``cli`` (the ``verify`` and ``mirror`` commands).
"""

from __future__ import annotations
