"""The price table: the shipped one loads and cites every price; a user's file overrides it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from trailrelay.cost.cli import cost
from trailrelay.cost.costs import siem_costs
from trailrelay.cost.prices import load_prices
from trailrelay.errors import ConfigError


def test_shipped_table_loads_and_every_price_is_dated_and_sourced() -> None:
    table = load_prices()
    assert len(table.prices) >= 15
    for pid, p in table.prices.items():
        assert p.as_of <= dt.datetime.now(dt.UTC).date(), pid
        assert p.source_url.startswith("https://"), pid
        assert len(p.source_title) > 10, pid
        assert p.kind in {"list", "third-party", "derived", "assumption"}, pid
        assert p.currency in table.fx.rates, pid
    assert table.prices["splunk_ingest"].kind == "assumption"  # Splunk publishes no list price
    for siem in ("splunk", "sentinel", "elastic", "aws"):
        assert table.for_siem(siem), siem
    assert {"sentinel_analytics_payg", "sentinel_basic", "sentinel_auxiliary", "sentinel_commit_100"} <= set(
        table.prices
    )
    for pid in (
        "s3_get",
        "s3_list",
        "sqs_requests",
        "lambda_gb_second",
        "nat_gateway_gb",
        "s3_gateway_endpoint_gb",
    ):
        assert pid in table.prices


def test_currency_conversion_uses_the_dated_rates() -> None:
    table = load_prices()
    rates = table.fx.rates
    assert table.convert(1.0, "USD", "USD") == 1.0
    assert table.convert(rates["USD"], "USD", "EUR") == pytest.approx(1.0)
    assert table.convert(1.0, "USD", "INR") == pytest.approx(rates["INR"] / rates["USD"])
    with pytest.raises(ConfigError, match="no exchange rate for XYZ"):
        table.convert(1.0, "USD", "XYZ")


def test_user_prices_override_and_cite_the_users_file(tmp_path: Path) -> None:
    mine = tmp_path / "negotiated.toml"
    mine.write_text(
        """
version = "acme-2026"
[prices.splunk_ingest]
value = 900.0
[prices.sentinel_analytics_payg]
value = 3.5
source_url = "https://example.com/our-ea"
source_title = "Our enterprise agreement, annex 2"
as_of = 2026-01-15
[fx]
as_of = 2026-11-20
rates = { INR = 100.0, CHF = 0.95 }
[assumptions]
elastic_retention_days = 30
""",
        encoding="utf-8",
    )
    table = load_prices(mine)
    splunk = table.prices["splunk_ingest"]
    assert (splunk.value, splunk.kind) == (900.0, "user")
    assert splunk.source_url == f"file:{mine}"
    assert splunk.unit == "per_gb_day_year"  # the rest of the shipped entry stays
    payg = table.prices["sentinel_analytics_payg"]
    assert (payg.value, payg.kind, payg.source_title) == (3.5, "user", "Our enterprise agreement, annex 2")
    assert (
        table.fx.rates["INR"] == 100.0 and table.fx.rates["CHF"] == 0.95 and table.fx.rates["USD"] == 1.1537
    )
    assert table.fx.as_of == dt.date(2026, 11, 20)
    assert table.assumption("elastic_retention_days", 90) == 30
    assert table.prices["s3_get"].kind != "user"  # untouched prices keep their source
    assert "acme-2026" in table.version


def test_rates_of_another_base_replace_the_shipped_ones(tmp_path: Path) -> None:
    """Rates per 1 USD are never mixed with the shipped rates per 1 EUR."""
    mine = tmp_path / "usd.toml"
    mine.write_text(
        '[fx]\nbase = "USD"\nas_of = 2026-11-20\nrates = { USD = 1.0, INR = 84.0 }\n', encoding="utf-8"
    )
    table = load_prices(mine)
    assert (table.fx.base, table.fx.rates) == ("USD", {"USD": 1.0, "INR": 84.0})
    assert table.fx.kind == "user" and "EUR" not in table.fx.note
    assert table.convert(2.0, "USD", "INR") == pytest.approx(168.0)
    with pytest.raises(ConfigError, match="no exchange rate for EUR: known INR, USD"):
        table.convert(1.0, "USD", "EUR")
    result = CliRunner().invoke(cost, [str(tmp_path), "--prices", str(mine), "--currency", "GBP"])
    assert result.exit_code == 2 and "no exchange rate for GBP" in result.stderr
    # Without a base of its own (or with the shipped one), a file's rates are laid over the shipped.
    same = tmp_path / "eur.toml"
    same.write_text('[fx]\nbase = "EUR"\nrates = { INR = 100.0 }\n', encoding="utf-8")
    rates = load_prices(same).fx.rates
    assert rates["INR"] == 100.0 and rates["USD"] == load_prices().fx.rates["USD"]


def test_every_elastic_price_row_is_priced_by_its_own_unit(tmp_path: Path) -> None:
    """A commitment tier set on elastic_ingest, and a row of its own, as any SIEM's rows are."""
    mine = tmp_path / "elastic.toml"
    mine.write_text(
        """
[prices.elastic_ingest]
unit = "per_day"
capacity_gb_per_day = 50
value = 100.0
plan = "our enterprise deal"
[prices.elastic_hosted]
siem = "elastic"
plan = "Elastic Cloud Hosted deployment"
unit = "per_hour"
value = 2.0
currency = "USD"
[assumptions]
elastic_enrichment_factor = 2.0
""",
        encoding="utf-8",
    )
    table = load_prices(mine)
    days = table.assumption("days_per_month", 30.4167)
    keep = table.assumption("elastic_retention_days", 90)
    retention = table.prices["elastic_retention"].value
    plans = {p.plan: p for p in siem_costs("elastic", 10e9, table, "USD")}  # 20 GB/day metered
    assert plans["Elastic Cloud Hosted deployment"].monthly == pytest.approx(2.0 * 24 * days)
    deal = plans["serverless security (ingest + retention)"]
    assert deal.monthly == pytest.approx(100.0 * days + 20 * keep * retention)
    assert "our enterprise deal: 100 USD/day for 50 GB/day" in deal.detail
    over = {p.plan: p for p in siem_costs("elastic", 30e9, table, "USD")}  # 60 GB/day: 10 over
    assert over["serverless security (ingest + retention)"].monthly == pytest.approx(
        (100.0 + 10 * 100.0 / 50) * days + 60 * keep * retention
    )
    assert sum(p.best for p in plans.values()) == 1
    shipped = load_prices()
    (serverless,) = siem_costs("elastic", 10e9, shipped, "USD")
    ingest = shipped.prices["elastic_ingest"].value
    assert serverless.monthly == pytest.approx(10 * days * ingest + 10 * keep * retention)
    assert serverless.price_ids == ("elastic_ingest", "elastic_retention")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prices.s3_get]\nas_of = 2999-01-01\n", "in the future"),
        ("[prices.s3_get]\nsource_url = 'not a url'\n", "source_url"),
        ("[prices.s3_get]\ncurrency = 'usd'\n", "currency"),
        ("[prices.s3_get]\ncurrency = 'CHF'\n", "no exchange rate"),
        ("[prices.s3_get]\nvalue = -1\n", "value"),
        ("[prices.s3_get]\nunit = 'per_fortnight'\n", "unit"),
        ("[prices.new_one]\nvalue = 1.0\n", "siem"),
        ("[prices.sentinel_commit_100]\nunit = 'per_gb'\n", "capacity_gb_per_day"),
        ("[fx]\nrates = { EUR = 2.0 }\n", "base currency"),
        ("[surprise]\nx = 1\n", "unknown tables"),
        ("[prices.s3_get\n", "not valid TOML"),
    ],
)
def test_bad_price_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_prices(bad)


def test_missing_price_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_prices(tmp_path / "nope.toml")
