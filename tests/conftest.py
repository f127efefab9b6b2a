"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fuzz: property and mutation fuzzing; NETDSL_FUZZ_EXAMPLES=20000 pytest -m fuzz runs the "
        "long version (default 2000 cases each)",
    )
