"""TLS: verification on by default, a private CA through ca_bundle, for HEC and the management API."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from splunk_hec_standin import HecStandIn
from splunk_mgmt_standin import MgmtStandIn
from splunk_testkit import TOKEN, context, make_config

from trailrelay.contract import Batch, FatalSinkError, Secret, Status
from trailrelay.testing import sample_records, settled
from trailrelay_splunk.management import ManagementError, ManagementTarget, SetupSpec, connect, plan_setup
from trailrelay_splunk.sink import SplunkSink


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("trailrelay test CA"))
        .issuer_name(_name("trailrelay test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("pki")
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(d / "server.pem", d / "server.key")
    return d / "ca.pem", server


@pytest.fixture
def hec_tls(pki: tuple[Path, ssl.SSLContext]) -> Iterator[HecStandIn]:
    hec = HecStandIn(TOKEN, use_ack=True).start(tls=pki[1])
    yield hec
    hec.stop()


def test_private_ca_through_ca_bundle(
    hec_tls: HecStandIn, pki: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets $REQUESTS_CA_BUNDLE override a session's verify; ca_bundle must still win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca-bundle.crt")
    assert hec_tls.url.startswith("https://")
    sink = SplunkSink(make_config(hec_tls.url, ack=True, ca_bundle=str(pki[0])), context())
    sink.open()
    assert {o.status for o in settled(sink.send(Batch(sample_records(5))))} == {Status.DELIVERED}
    assert sink.check().ok
    sink.close()


def test_unknown_ca_is_fatal_by_default(hec_tls: HecStandIn) -> None:
    sink = SplunkSink(make_config(hec_tls.url, ack=True), context())
    sink.open()
    with pytest.raises(FatalSinkError, match="ca_bundle") as info:
        settled(sink.send(Batch(sample_records(2))))
    assert TOKEN not in str(info.value)
    assert hec_tls.stored == []
    sink.close()


def test_management_api_over_https(pki: tuple[Path, ssl.SSLContext]) -> None:
    api = MgmtStandIn().start(tls=pki[1])
    try:
        target = ManagementTarget(api.url, api.username, Secret(api.password), ca_bundle=str(pki[0]))
        assert plan_setup(connect(target), SetupSpec(index="main"))[0].action == "exists"
        with pytest.raises(ManagementError, match="cannot log in"):
            connect(ManagementTarget(api.url, api.username, Secret(api.password)))
    finally:
        api.stop()


def test_proxy_and_ca_bundle_from_the_environment_are_read_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """requests' own environment handling, resolved at open instead of on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "")
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("not read here")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    sink = SplunkSink(make_config("https://splunk.example.com:8088"), context())
    sink.open()
    session = sink._channel().session
    assert session.trust_env is False
    assert session.proxies == {"https": "http://proxy.internal:3128"}
    assert sink._verify == str(bundle)
    monkeypatch.setenv("NO_PROXY", "splunk.example.com")
    other = SplunkSink(make_config("https://splunk.example.com:8088"), context())
    other.open()
    assert other._channel().session.proxies == {}
    sink.close()
    other.close()
