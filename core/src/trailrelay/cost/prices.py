"""The price table: shipped ``prices.toml`` plus the user's ``--prices FILE``, validated.

Every price carries the date it was seen, a public source (URL and title) and its kind
(``list``, ``third-party``, ``derived``, ``assumption`` or ``user``). A user's file has the
same layout and names only what changes; a price it touches becomes ``user`` and cites the
file unless the file gives its own source. Currency conversion uses the table's dated rates
(units per 1 ``fx.base``), which a user's file may also replace: its rates are laid over the
shipped ones when it keeps their base, and replace them all when it names another ``base``.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from trailrelay.errors import ConfigError
from trailrelay.settings import Meta, Settings, field

__all__ = ["Fx", "Price", "PriceTable", "load_prices"]

Unit = Literal[
    "per_gb",
    "per_gb_month",
    "per_gb_day_year",
    "per_day",
    "per_1000_requests",
    "per_million_requests",
    "per_gb_second",
    "per_hour",
]
Kind = Literal["list", "third-party", "derived", "assumption", "user"]

_CODE = r"^[A-Z]{3}$"


class Sourced(Settings):
    """Where a figure comes from and when it was seen."""

    as_of: dt.date
    source_url: Annotated[str, Meta(pattern=r"^(https?://\S+|file:\S+)$")]
    source_title: Annotated[str, Meta(min_length=3)]
    kind: Kind
    note: str = ""

    def __post_init__(self) -> None:
        value = self.as_of
        if value > dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1):
            raise ValueError(f"date {value} is in the future")
        if value < dt.date(2010, 1, 1):
            raise ValueError(f"date {value} is too old to be a current price")


class Price(Sourced):
    """One price: what it buys, its unit and value in a currency."""

    siem: Annotated[str, Meta(min_length=1)]
    plan: Annotated[str, Meta(min_length=1)]
    unit: Unit
    value: Annotated[float, Meta(ge=0)]
    currency: Annotated[str, Meta(pattern=_CODE)]
    capacity_gb_per_day: Annotated[float, Meta(gt=0)] | None = None
    group: str = ""
    """Prices with the same group are one plan, named by the group (their costs add up)."""
    units: Annotated[float, Meta(gt=0)] = 1.0
    """How many are billed: instances or OCUs for ``per_hour``, copies kept for ``per_gb_month``."""
    on_disk: bool = False
    """``per_gb_month`` on the on-disk estimate (``<siem>_disk_ratio``) rather than the billable volume."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.unit == "per_day") != (self.capacity_gb_per_day is not None):
            raise ValueError("capacity_gb_per_day goes with unit = 'per_day' (a commitment tier), only")


class Fx(Sourced):
    """Exchange rates: units of each currency per 1 ``base``."""

    base: Annotated[str, Meta(pattern=_CODE)]
    rates: dict[str, float]

    def __post_init__(self) -> None:
        super().__post_init__()
        for code, rate in self.rates.items():
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise ValueError(f"{code!r} is not a currency code (three capital letters)")
            if not rate > 0:
                raise ValueError(f"rate of {code} must be positive")
        if self.rates.get(self.base) != 1.0:
            raise ValueError(f"rates must give the base currency {self.base} as 1.0")


class PriceTable(Settings):
    """The validated table: prices by id, exchange rates, and the model's assumptions."""

    version: str
    fx: Fx
    prices: dict[str, Price]
    assumptions: dict[str, Any] = field(default_factory=dict)
    origin: list[str] = field(default_factory=list)
    """Where the table came from (the shipped file, the user's file), for reports."""

    def __post_init__(self) -> None:
        for pid, price in self.prices.items():
            if price.currency not in self.fx.rates:
                raise ValueError(
                    f"prices.{pid}: currency {price.currency} has no exchange rate in [fx.rates]"
                )

    def convert(self, amount: float, currency: str, to: str) -> float:
        """``amount`` in ``currency`` expressed in ``to``."""
        rates = self.fx.rates
        if to == currency and to in rates:
            return amount
        if to not in rates:
            raise ConfigError(
                f"no exchange rate for {to}: known {', '.join(sorted(rates))}; add it with --prices"
            )
        return amount / rates[currency] * rates[to]

    def price(self, pid: str, currency: str) -> float | None:
        """The value of price ``pid`` in ``currency``, or None when the table has no such price."""
        p = self.prices.get(pid)
        return None if p is None else self.convert(p.value, p.currency, currency)

    def assumption(self, name: str, default: float) -> float:
        """A numeric model assumption (``[assumptions]``)."""
        value = self.assumptions.get(name, default)
        return float(value) if isinstance(value, (int, float)) else default

    def for_siem(self, siem: str) -> dict[str, Price]:
        """The prices of one SIEM (or ``aws``), by id."""
        return {k: p for k, p in self.prices.items() if p.siem == siem}


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"price file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read price file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"price file {path} is not valid TOML: {exc}") from None


def _shipped() -> dict[str, Any]:
    text = resources.files("trailrelay.cost").joinpath("prices.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _overlay(base: dict[str, Any], user: dict[str, Any], path: Path) -> dict[str, Any]:
    """The shipped table with the user's entries laid over it (user-touched prices cite the file)."""
    out = dict(base)
    cite = {
        "kind": "user",
        "source_url": f"file:{path}",
        "source_title": f"your price file {path.name}",
        "as_of": dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date(),
    }
    unknown = set(user) - {"version", "fx", "prices", "assumptions"}
    if unknown:
        raise ConfigError(f"{path}: unknown tables {sorted(unknown)} (use fx, prices, assumptions)")
    if "version" in user:
        out["version"] = f"{base.get('version', '?')} + {user['version']}"
    if "fx" in user:
        fx = user["fx"]
        if not isinstance(fx, dict):
            raise ConfigError(f"{path}: [fx] must be a table")
        if fx.get("base", base["fx"]["base"]) != base["fx"]["base"]:
            # Rates per 1 of another currency replace the shipped ones: kept beside them, a
            # shipped rate would be read against the wrong base.
            merged_fx = dict(fx)
        else:
            merged_fx = {**base["fx"], **{k: v for k, v in fx.items() if k != "rates"}}
            merged_fx["rates"] = {**base["fx"]["rates"], **fx.get("rates", {})}
        out["fx"] = {**merged_fx, **{k: cite[k] for k in cite if k not in fx}}
    if "prices" in user:
        prices = dict(base.get("prices", {}))
        for pid, entry in user["prices"].items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: prices.{pid} must be a table")
            start = prices.get(pid, {})
            own_source = "source_url" in entry
            merged = {**start, **entry}
            if not own_source:
                merged.update({k: v for k, v in cite.items() if k not in entry or k == "kind"})
            elif "kind" not in entry:
                merged["kind"] = "user"
            prices[pid] = merged
        out["prices"] = prices
    if "assumptions" in user:
        out["assumptions"] = {**base.get("assumptions", {}), **user["assumptions"]}
    return out


def load_prices(user_file: Path | None = None) -> PriceTable:
    """The shipped price table, with ``user_file`` laid over it when given; ConfigError if invalid."""
    raw = _shipped()
    origin = ["shipped prices.toml " + str(raw.get("version", "?"))]
    if user_file is not None:
        raw = _overlay(raw, _read(user_file), user_file)
        origin.append(str(user_file))
    try:
        return PriceTable.validate({**raw, "origin": origin})
    except ConfigError as exc:
        where = str(user_file) if user_file else "prices.toml"
        problems = str(exc).split("\n", 1)[-1]
        raise ConfigError(f"{where}: invalid price table:\n{problems}") from None
