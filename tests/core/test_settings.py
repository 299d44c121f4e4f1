"""The configuration tables' base (trailrelay.settings): conversion, errors, secrets, subclasses."""

from __future__ import annotations

import importlib.metadata
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from msgspec import inspect

import trailrelay.config  # noqa: F401 - every core table defined
from trailrelay.contract import ConfigError, Meta, Secret, SentInHeader, Settings, SinkConfig
from trailrelay.cost.prices import PriceTable  # noqa: F401 - defined outside the config file's tree
from trailrelay.settings import _decode, secret_values

SECRET = "hunter2-do-not-show"


class _Sink(SinkConfig):
    """A connector's table: a required key after the base's optional ones."""

    url: str
    token: Secret
    mode: Literal["a", "b"] = "a"
    batch_bytes: Annotated[int, Meta(ge=1024)] = 4096
    ca_file: Path | None = None


def _all_tables() -> list[type[Settings]]:
    for ep in importlib.metadata.entry_points(group="trailrelay.sinks"):
        ep.load()  # the installed connectors' tables too
    seen: list[type[Settings]] = []
    todo: list[type[Settings]] = [Settings]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def test_every_table_can_be_validated() -> None:
    """msgspec checks a table's annotations only when it first converts one (a limit on an
    optional type, ``Annotated[int | None, Meta(ge=1)]``, is refused then): every table of core
    and of the installed connectors is converted here once."""
    tables = _all_tables()
    assert len(tables) >= 25
    names = {t.__name__ for t in tables}
    assert {"DoctorConfig", "FilterRule", "PriceTable", "FileConfig", "FirehoseSourceConfig"} <= names
    for cls in tables:
        try:
            msgspec.convert({}, cls, strict=False, dec_hook=_decode)
        except (msgspec.ValidationError, ValueError):
            pass  # required keys missing: the type itself was accepted


def test_values_from_the_environment_are_converted() -> None:
    """``${NAME}`` always gives a string: numbers, booleans, paths and secrets come from text."""
    cfg = _Sink.validate(
        {
            "type": "x",
            "url": "https://siem",
            "token": SECRET,
            "concurrency": "8",
            "batch_bytes": "2048",
            "ca_file": "/etc/ca.pem",
            "filter": {"rules": [{"name": "r", "action": "drop", "read_only": "true"}]},
        }
    )
    assert cfg.concurrency == 8 and cfg.batch_bytes == 2048
    assert cfg.ca_file == Path("/etc/ca.pem")
    assert cfg.filter.rules[0].read_only is True
    assert isinstance(cfg.token, Secret) and cfg.token.get_secret_value() == SECRET
    assert _Sink.validate(cfg) is cfg
    assert cfg.display_name == "x" and cfg.max_retry_seconds == 1800.0


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    cfg = _Sink.validate({"type": "x", "url": "u", "token": SECRET})
    for text in (repr(cfg), str(cfg.token), f"{cfg.token}", repr(msgspec.structs.asdict(cfg))):
        assert SECRET not in text
    assert cfg.token == Secret(SECRET) and cfg.token != Secret("other") and len(cfg.token) == len(SECRET)
    with pytest.raises(ConfigError) as info:
        _Sink.validate({"type": "x", "url": "u", "token": "t", "mode": SECRET, "batch_bytes": SECRET})
    assert SECRET not in str(info.value)
    assert "mode: not one of the allowed values" in str(info.value)


def test_errors_name_the_key_and_every_unknown_one() -> None:
    with pytest.raises(ConfigError) as info:
        _Sink.validate(
            {"type": "x", "url": "u", "token": "t", "batch_bytes": 10, "tokne": 1, "urll": 2},
            where="sinks[1]",
        )
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert "  sinks[1].batch_bytes: Expected `int` >= 1024" in lines
    assert "  sinks[1].tokne: unknown key (not a setting of this table)" in lines
    assert "  sinks[1].urll: unknown key (not a setting of this table)" in lines
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.url: required"):
        _Sink.validate({"type": "x", "token": "t"}, where="sinks[0]")
    with pytest.raises(ConfigError, match=r"filter\.rules\[0\]\.action: required"):
        _Sink.validate({"type": "x", "url": "u", "token": "t", "filter": {"rules": [{"name": "r"}]}})


def test_tables_are_frozen_and_replace_makes_a_copy() -> None:
    cfg = _Sink.validate({"type": "x", "url": "u", "token": "t"})
    with pytest.raises(AttributeError):
        cfg.url = "v"  # type: ignore[misc]
    other = cfg.replace(url="v")
    assert (cfg.url, other.url) == ("u", "v") and other.token == cfg.token


def _secret_keys(cls: type[Settings]) -> list[tuple[str, bool]]:
    """``(key, is_a_list)`` of each field of ``cls`` that holds a Secret (or a list of them)."""

    def holds(t: Any) -> bool:
        while isinstance(t, inspect.Metadata):
            t = t.type
        if isinstance(t, inspect.UnionType):
            return any(holds(u) for u in t.types)
        return isinstance(t, inspect.CustomType) and t.cls is Secret

    keys = []
    for f in inspect.type_info(cls).fields:
        t = f.type.type if isinstance(f.type, inspect.Metadata) else f.type
        if holds(t):
            keys.append((f.name, False))
        elif isinstance(t, inspect.ListType) and holds(t.item_type):
            keys.append((f.name, True))
    return keys


def test_a_secret_no_http_header_can_carry_is_refused_by_its_key() -> None:
    """Every secret of every table, core's and the installed connectors': a line break or other
    control character in it is a config error naming the key, never the value. (A token read
    with its newline failed at the first request instead, the header and token in the message.)"""
    found: list[str] = []
    for cls in _all_tables():
        for key, is_list in _secret_keys(cls):
            found.append(f"{cls.__name__}.{key}")
            bad = "hunter2\nsecond-line"
            value: Any = ["fine-key", bad] if is_list else bad
            at = f"{key}[1]" if is_list else key
            with pytest.raises(ConfigError) as info:
                cls.validate({key: value}, where="sinks[0]")
            text = str(info.value)
            assert f"sinks[0].{at}: contains a line break or another control character" in text, text
            assert "hunter2" not in text and "second-line" not in text
    expected = {"FirehoseSourceConfig.access_key", "FirehoseSourceConfig.access_keys"}
    by_connector = {  # each checked where it is installed (core's own test run has none of them)
        "splunk": {"SplunkConfig.token", "SplunkConfig.management_token", "SplunkConfig.password"},
        "elastic": {
            "ElasticConfig.api_key",
            "ElasticConfig.password",
            "ElasticConfig.bearer_token",
            "ElasticConfig.search_api_key",
        },
        "opensearch": {"OpenSearchConfig.password"},
        "sentinel": {"SentinelConfig.client_secret", "SentinelConfig.certificate_password"},
    }
    installed = {ep.name for ep in importlib.metadata.entry_points(group="trailrelay.sinks")}
    for name, keys in by_connector.items():
        if name in installed:
            expected |= keys
    assert expected <= set(found)
    for char in "\r\n\x00\x1b\t\x7f":
        with pytest.raises(ConfigError, match="token: contains a line break"):
            _Sink.validate({"type": "x", "url": "u", "token": f"{SECRET}{char}"})
    for fine in (SECRET, "with spaces inside", "dXNlcjpwYXNz==", "p\u00e4ss-\u00fc"):
        assert _Sink.validate({"type": "x", "url": "u", "token": fine}).token.get_secret_value() == fine


class _HeaderAuth(Settings):
    user: Annotated[str, SentInHeader("ascii", "which the client cannot send")]
    password: Annotated[Secret, SentInHeader("ascii", "which the client cannot send")]


class _HeaderSink(SinkConfig):
    url: str
    token: Annotated[Secret, Meta(description="Sent as `Authorization: X <token>`."), SentInHeader()]
    keys: Annotated[list[Secret], SentInHeader()] = msgspec.field(default_factory=list)
    client_secret: Secret | None = None  # posted in a form body: any character goes
    auth: _HeaderAuth | None = None


def test_a_value_sent_in_a_header_it_cannot_carry_is_refused_by_its_key() -> None:
    """A HEC token with a '€' in it was accepted: `check` then said "UnicodeEncodeError ...
    '\\u20ac' in position 16" (a character of the token and where it sits) and `forward`
    dead-lettered every record. Now it is a config error naming the key, never the value."""
    euro = "0a1b2c3d-€-token"
    with pytest.raises(ConfigError) as info:
        _HeaderSink.validate(
            {
                "type": "x",
                "url": "u",
                "token": euro,
                "keys": ["fine", euro],
                "auth": {"user": "jürgen", "password": euro},
            },
            where="sinks[0]",
        )
    assert str(info.value).splitlines() == [
        "invalid configuration:",
        "  sinks[0].token: contains a character outside Latin-1, which an HTTP header cannot carry",
        "  sinks[0].keys[1]: contains a character outside Latin-1, which an HTTP header cannot carry",
        "  sinks[0].auth.user: contains a character outside ASCII, which the client cannot send",
        "  sinks[0].auth.password: contains a character outside ASCII, which the client cannot send",
    ]
    for part in ("€", "20ac", "0a1b", 'token"', "position", "jü"):
        assert part not in str(info.value)
    fine = _HeaderSink.validate(
        {
            "type": "x",
            "url": "u",
            "token": "päss-ü",
            "client_secret": euro,
            "auth": {"user": "a", "password": "b"},
        }
    )
    assert fine.token.get_secret_value() == "päss-ü"  # Latin-1 goes in a header as it is
    assert fine.client_secret is not None and fine.client_secret.get_secret_value() == euro


def test_each_connector_marks_the_secrets_it_sends_in_headers_and_only_those() -> None:
    """Where each secret is sent decides: a header value (HEC and management tokens, Elastic's
    API key and bearer token, basic authentication) is limited, a form body (Sentinel's client
    secret, Splunk's management password) or a local file's password is not, nor the Firehose
    access key, which Firehose sends and the endpoint compares as the bytes it received."""
    marked: set[str] = set()
    for cls in _all_tables():
        hints = typing.get_type_hints(cls, include_extras=True)
        for name in cls.__struct_fields__:
            if any(isinstance(m, SentInHeader) for m in getattr(hints[name], "__metadata__", ())):
                marked.add(f"{cls.__name__}.{name}")
    marked -= {"_HeaderSink.token", "_HeaderSink.keys", "_HeaderAuth.user", "_HeaderAuth.password"}
    by_connector = {
        "splunk": {"SplunkConfig.token", "SplunkConfig.management_token"},
        "elastic": {
            "ElasticConfig.api_key",
            "ElasticConfig.bearer_token",
            "ElasticConfig.search_api_key",
            "ElasticConfig.username",
            "ElasticConfig.password",
        },
        "opensearch": {"OpenSearchConfig.username", "OpenSearchConfig.password"},
        "sentinel": set(),
    }
    installed = {ep.name for ep in importlib.metadata.entry_points(group="trailrelay.sinks")}
    expected = set().union(*(keys for name, keys in by_connector.items() if name in installed))
    assert marked == expected


def test_secret_values_are_every_secret_as_a_message_may_quote_it() -> None:
    """What is scrubbed from an unexpected exception's text: each secret plain, stripped, and as
    the repr of the string or of its bytes shows it (``Invalid header value b'Splunk tok\\n'``)."""

    class _Nested(msgspec.Struct, kw_only=True):  # not Settings: the tables above stay the real ones
        key: Secret
        keys: list[Secret] = msgspec.field(default_factory=list)

    class _Outer(msgspec.Struct, kw_only=True):
        token: Secret | None = None
        inner: _Nested | None = None
        name: str = "not-a-secret"

    cfg = _Outer(
        token=Secret("tok\n"),
        inner=_Nested(key=Secret("k\u00e4y"), keys=[Secret("first-of-many"), Secret(""), Secret(" ")]),
    )
    values = secret_values(cfg)
    assert set(values) == {"tok\n", "tok", "tok\\n", "k\u00e4y", "k\\xc3\\xa4y", "first-of-many"}
    assert values == sorted(values, key=len, reverse=True)  # a longer secret is replaced before its part
    assert secret_values(_Outer()) == []
