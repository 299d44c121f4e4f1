"""Placeholder sink settings: the plugin's optional ``demo_config()`` hook, then core's fallback."""

from __future__ import annotations

from typing import Any

import pytest

from trailrelay.sinks.placeholders import DEMO_SINK_CONFIGS, placeholder_config


class WithHook:
    @staticmethod
    def demo_config() -> dict[str, Any]:
        return {"url": "https://siem.example.invalid"}


class Broken:
    def demo_config(self) -> dict[str, Any]:
        raise RuntimeError("boom")


class NotADict:
    def demo_config(self) -> list[str]:
        return ["no"]


def test_the_hook_wins_and_gets_its_type() -> None:
    assert placeholder_config("fourth", WithHook()) == {
        "url": "https://siem.example.invalid",
        "type": "fourth",
    }


def test_without_the_hook_the_fallback_table_or_none() -> None:
    assert placeholder_config("splunk", object()) == DEMO_SINK_CONFIGS["splunk"]
    assert placeholder_config("fourth", object()) is None


@pytest.mark.parametrize("plugin", [Broken(), NotADict()])
def test_a_broken_hook_counts_as_none(plugin: object, caplog: pytest.LogCaptureFixture) -> None:
    assert placeholder_config("fourth", plugin) is None
    assert "demo_config()" in caplog.text


def test_the_hook_result_is_a_copy() -> None:
    table = {"type": "x"}

    class Same:
        @staticmethod
        def demo_config() -> dict[str, Any]:
            return table

    placeholder_config("x", Same())["url"] = "changed"
    assert table == {"type": "x"}
