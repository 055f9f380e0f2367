"""Fixtures of the converters tests."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "lite: converters.lite and runtime.lite (LiteRT is the judge)")
