"""What an HEC response means: the documented status codes and our decision for each.

HEC answers every request with an HTTP status and a JSON body ``{"text": ..., "code": N}``,
plus ``ackId`` on success when the token uses indexer acknowledgement and
``invalid-event-number`` (0-based, within the request) when one event of a batch is refused.
Codes 0-20 are Splunk's documented table ("Troubleshoot HTTP Event Collector"); 21-27 appear in
newer releases. Decisions:

=========  ======  ===========================================  ==========================
code       status  text                                         decision
=========  ======  ===========================================  ==========================
0          200     Success                                      delivered (after ack)
1, 22      403/400 Token disabled                               fatal: fix ``token``
2          401     Token is required                            fatal
3          401     Invalid authorization                        fatal
4, 21      403/400 Invalid token                                fatal
5          400     No data                                      reject the request's events
6          400     Invalid data format (+invalid-event-number)  reject that event, resend rest
7          400     Incorrect index                              fatal: fix ``index``
8          500     Internal server error                        retry
9          503     Server is busy                               retry (honour Retry-After)
10         400     Data channel is missing                      fatal: token needs ``ack``
11         400     Invalid data channel                         fatal
12, 13     400     Event field is required / cannot be blank    reject that event
14         400     ACK is disabled                              fatal: token has useACK off
15         400     Error in handling indexed fields             reject that event
16         400     Query string authorization is not enabled    fatal
17         200     HEC is healthy                               (health check)
18-20, 23  503     HEC is unhealthy / shutting down             retry
24, 25     200     queue / ack approaching capacity             delivered, warn
26, 27     429     queue / ack channel at capacity              retry
(413)      413     request larger than max_content_length       split the request
(none)     2xx     not HEC's answer (no ``code``)               retry: nothing was confirmed
(none)     4xx     not HEC's answer (a proxy's page)            fatal: fix ``url``
(none)     3xx     a redirect (never followed)                  fatal: fix ``url``
=========  ======  ===========================================  ==========================

Only a 2xx with HEC's ``code`` 0 (or 24, 25) counts as a success. Receivers that imitate HEC
answer the same (Vector, Fluent Bit, recent OpenTelemetry Collectors:
``{"text": "Success", "code": 0}``), except older releases of the OpenTelemetry Collector's
``splunk_hec`` receiver, whose success is the JSON string ``"OK"``: taken as code 0. Any other
2xx (a gateway's ``{"text": "..."}`` or ``{"status": "ok"}``, another JSON string, a page, an
empty body) says nothing about the events, so they are sent again. A 4xx that is not HEC's
JSON (nginx's "400 The plain HTTP request was sent to HTTPS port", a WAF's page) is not HEC
refusing the events but something else answering in its place: a configuration mistake that
stops the run, like a redirect, instead of dead-lettering every event as refused.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from trailrelay.contract import describe_answer, retry_after_seconds, scrub

__all__ = ["FATAL_HINTS", "OTEL_SUCCESS", "HecReply", "Verdict", "classify", "parse_reply"]


class Verdict(enum.Enum):
    """What the sink does with the events of one request after HEC's answer."""

    OK = "ok"
    RETRY = "retry"
    FATAL = "fatal"
    SPLIT = "split"
    BAD_EVENT = "bad_event"
    REJECT = "reject"


FATAL_HINTS: dict[int, str] = {
    1: "the HEC token is disabled: enable it in Splunk or configure another `token`",
    2: "HEC received no token: set `token`",
    3: "HEC could not read the Authorization header: check `token` (it must be the bare token value)",
    4: "HEC does not know this token: check `token`",
    7: "the token may not write to the configured index: check `index` and the token's allowed indexes",
    10: "the token uses indexer acknowledgement and needs a request channel: set ack = true",
    11: "HEC refused the request channel: check that ack = true matches the token's useACK setting",
    14: "ack = true but the token has indexer acknowledgement (useACK) off: enable it or set ack = false",
    16: "HEC refused query-string authorization",
    21: "HEC does not know this token: check `token`",
    22: "the HEC token is disabled: enable it in Splunk or configure another `token`",
}
OTEL_SUCCESS = "OK"
"""The success answer, a JSON string, of older OpenTelemetry Collector splunk_hec receivers
(``responseOK`` in ``receiver/splunkhecreceiver/receiver.go``; recent ones answer like HEC)."""
_BAD_EVENT_CODES = frozenset({6, 12, 13, 15})
_RETRY_CODES = frozenset({8, 9, 18, 19, 20, 23, 26, 27})
_WARN_CODES = frozenset({24, 25})


@dataclass(frozen=True, slots=True)
class HecReply:
    """One HEC response, decoded; ``code`` is None when the body was not HEC's JSON."""

    status: int
    code: int | None
    text: str
    ack_id: int | None = None
    invalid_event: int | None = None
    retry_after: float | None = None
    hec: bool = False
    """The body was HEC's JSON: an object with its integer ``code`` (or an ack poll's ``acks``),
    or the Collector's ``"OK"``; not a proxy's page, an empty answer or another service's JSON."""
    acks: dict[str, Any] | None = None
    """An ack poll's ``acks`` object."""
    answer: str = ""
    """What answered when it was not HEC: content type and excerpt (``describe_answer``)."""

    @property
    def warning(self) -> bool:
        """True for a success that says HEC's queues are filling up."""
        return self.code in _WARN_CODES

    def describe(self) -> str:
        """``HTTP 503, code 9: Server is busy`` — for reasons and messages (never holds secrets)."""
        code = f", code {self.code}" if self.code is not None else ""
        return f"HTTP {self.status}{code}: {self.text}"


def parse_reply(
    status: int,
    body: bytes,
    retry_after: str | None = None,
    secrets: Sequence[str] = (),
    content_type: str | None = None,
) -> HecReply:
    """Decode an HEC response body; tolerant of proxies that answer with HTML or nothing.

    ``secrets`` (the token) are masked in the text kept from the body: some proxies and WAFs
    echo the request's headers, ``Authorization: Splunk <token>`` among them, in their error
    pages, and that text goes into reasons, logs and dead letters.
    """
    doc: Any = None
    if body:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
    after = retry_after_seconds(retry_after)
    if isinstance(doc, str) and doc.lstrip().startswith("{"):
        # the OpenTelemetry Collector wraps HEC's JSON in a JSON string: "{\"code\":6,...}"
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(doc)
    if doc == OTEL_SUCCESS and 200 <= status < 300:
        return HecReply(status, 0, doc, retry_after=after, hec=True)  # the Collector's code 0
    code = doc.get("code") if isinstance(doc, dict) else None
    acks = doc.get("acks") if isinstance(doc, dict) else None
    if not _is_int(code) and not isinstance(acks, dict):
        # Not HEC's answer: a proxy's page, an empty body, a gateway's own JSON. Its start, masked
        # before it is cut (so a token across the cut leaves no piece), says what answered.
        snippet = scrub(body[:_SCANNED].decode("utf-8", "replace"), secrets).strip()[:120]
        text = snippet or _REASONS.get(status, "an empty body")
        return HecReply(
            status, None, text, retry_after=after, answer=describe_answer(body, content_type, secrets)
        )
    ack = doc.get("ackId")
    bad = doc.get("invalid-event-number")
    return HecReply(
        status,
        code if _is_int(code) else None,
        scrub(str(doc.get("text") or _REASONS.get(status, "")), secrets),
        ack if _is_int(ack) else None,
        bad if _is_int(bad) else None,
        after,
        hec=True,
        acks=acks if isinstance(acks, dict) else None,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def classify(reply: HecReply) -> Verdict:
    """The decision for a reply to an event request (see the module table)."""
    status, code = reply.status, reply.code
    if code in FATAL_HINTS:
        return Verdict.FATAL
    if 200 <= status < 300:
        if code is None:  # not HEC's answer: nothing confirms the events were taken
            return Verdict.RETRY
        return Verdict.OK if code in (0, *_WARN_CODES) else Verdict.REJECT
    if status == 413:
        return Verdict.SPLIT
    if code in _RETRY_CODES or status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if status in (401, 403, 404, 405) or (300 <= status < 500 and not reply.hec):
        return Verdict.FATAL  # a 3xx or 4xx not from HEC: something else answers at `url`
    if code in _BAD_EVENT_CODES:
        return Verdict.BAD_EVENT
    return Verdict.REJECT


_SCANNED = 64 * 1024
"""Bytes of a body that is not HEC's JSON read for its snippet (masked, then cut to 120)."""

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
