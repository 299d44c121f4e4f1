"""Identifier and timestamp helpers for the synthetic trail, all drawn from a seeded RNG."""

from __future__ import annotations

import datetime as dt
import random
import string

__all__ = [
    "ALNUM",
    "B32",
    "UPPER_DIGITS",
    "expiration",
    "hex_token",
    "iso_time",
    "rng_for",
    "token",
    "uuid4",
]

ALNUM = string.ascii_letters + string.digits
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
UPPER_DIGITS = string.ascii_uppercase + string.digits
_VARIANT = "89ab"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rng_for(seed: int, purpose: str) -> random.Random:
    """Return a deterministic RNG stream for one purpose, independent of the other streams."""
    return random.Random(f"trailrelay/{seed}/{purpose}")  # noqa: S311 - synthetic data, not crypto


def token(rng: random.Random, alphabet: str, n: int) -> str:
    """``n`` characters drawn from ``alphabet``."""
    return "".join(rng.choices(alphabet, k=n))


def hex_token(rng: random.Random, n: int) -> str:
    """``n`` lowercase hex digits."""
    return f"{rng.getrandbits(4 * n):0{n}x}"


def uuid4(rng: random.Random) -> str:
    """Draw a version-4 UUID string from the RNG (no OS entropy)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def iso_time(day: dt.date, second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for any second offset from the day's midnight (negative allowed)."""
    t = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(seconds=second)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def expiration(day: dt.date, second: int) -> str:
    """STS/IAM style ``Mar 2, 2026, 3:05:33 PM`` for a second offset from the day's midnight."""
    t = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(seconds=second)
    hour = t.hour % 12 or 12
    half = "AM" if t.hour < 12 else "PM"
    return f"{_MONTHS[t.month - 1]} {t.day}, {t.year}, {hour}:{t.minute:02d}:{t.second:02d} {half}"
