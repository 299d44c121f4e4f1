"""The optional plugin hook ``billing_rule()``: declared rules win, core's table is the fallback."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from trailrelay.contract import BillingRule, Record
from trailrelay.cost.billing import Meter, billing_rule, plugin_billing_rule
from trailrelay.cost.costs import siem_costs
from trailrelay.cost.prices import load_prices
from trailrelay.testing import sample_records


class Lines:
    content_type = "application/x-ndjson"

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        return [b"".join(b'{"a":1}\n' + r.line() + b"\n" for r in records)]


class Fourth:
    def encoder(self, config: object) -> Lines:
        return Lines()

    @staticmethod
    def billing_rule() -> BillingRule:
        return BillingRule("second lines", "bills every second line", lambda b: [len(b.split(b"\n")[1])], "x")


def test_a_declared_rule_is_used() -> None:
    meter = Meter.for_plugin("fourth", Fourth(), None)
    rec = sample_records(1)[0]
    assert meter.rule.unit == "second lines"
    assert meter.measure(rec) == (len(rec.line()), len(rec.line()) + 9)


def test_without_the_hook_core_falls_back() -> None:
    assert plugin_billing_rule(object()) is None
    assert Meter.for_plugin(
        "elastic", Fourth.__new__(type("P", (), {"encoder": Fourth.encoder})), None
    ).rule == (billing_rule("elastic", "application/x-ndjson"))
    assert billing_rule("fourth", "application/x-ndjson").unit == "line bytes"
    assert billing_rule("fourth", "application/json").unit == "request bytes"


def test_a_rule_of_another_type_is_refused() -> None:
    class Wrong:
        def billing_rule(self) -> str:
            return "bytes"

    with pytest.raises(TypeError, match="not a BillingRule"):
        plugin_billing_rule(Wrong())


def test_a_rule_without_sizes_counts_ndjson_lines() -> None:
    meter = Meter("x", Lines(), BillingRule("u", "r"))
    rec = sample_records(1)[0]
    assert meter.measure(rec)[0] == len(b'{"a":1}') + len(rec.line())


def test_grouped_prices_add_up_into_one_plan() -> None:
    plans = siem_costs("opensearch", 1e9, load_prices(), "USD")
    assert all(len(p.price_ids) == 2 for p in plans)
    assert sum(p.best for p in plans) == 1
