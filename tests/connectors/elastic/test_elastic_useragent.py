"""``user_agent.*``: RE2 (the ``[fast]`` extra) answers as ua-parser's pure-Python matcher does."""

from __future__ import annotations

import orjson
import pytest
import ua_parser
from ua_parser import Parser, basic, load_builtins

from trailrelay.testing import load_records, require_corpus
from trailrelay_elastic.useragent import user_agent

# Shapes the corpus may lack: browsers, SDKs with OS parts, a crawler, a console, nothing known.
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:102.0) Gecko/20100101 Firefox/102.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off command/s3.ls",
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.11.6",
    "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64",
    "console.amazonaws.com",
    "AWS Internal",
    "curl/8.4.0",
    "Terraform/1.6.6 (+https://www.terraform.io) terraform-provider-aws/5.31.0",
]


@pytest.fixture(scope="module")
def reference() -> Parser:
    """ua-parser's pure-Python matcher over the same uap-core rules: the reference answers."""
    return Parser(basic.Resolver(load_builtins()))


def _fields(result: ua_parser.Result) -> tuple[object, object, object]:
    return result.user_agent, result.os, result.device


def test_the_native_matcher_is_what_these_tests_compare() -> None:
    # ua-parser picks its best matcher at run time: RE2 when the [fast] extra (and the test
    # extra) installed it, else its pure-Python one, ~40x slower on an agent not seen before.
    assert ua_parser.Re2Resolver is not None, "google-re2 is missing: install trailrelay-elastic[fast]"


@pytest.mark.parametrize("agent", AGENTS)
def test_agrees_with_the_reference_matcher(reference: Parser, agent: str) -> None:
    assert _fields(ua_parser.parse(agent)) == _fields(reference.parse(agent))


def test_agrees_on_every_corpus_agent(reference: Parser) -> None:
    agents = {orjson.loads(r.raw).get("userAgent") for r in load_records(require_corpus("cloudtrail"))}
    strings = sorted(a for a in agents if isinstance(a, str))
    assert len(strings) > 50
    differ = [a for a in strings if _fields(ua_parser.parse(a)) != _fields(reference.parse(a))]
    assert differ == []


def test_ecs_shape_of_a_browser() -> None:
    doc = user_agent(AGENTS[0])
    assert doc["name"] == "Chrome"
    assert doc["version"] == "122.0.0.0"
    assert doc["os"] == {"name": "Windows", "version": "10", "full": "Windows 10"}
    assert doc["device"] == {"name": "Other"}
