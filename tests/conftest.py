"""Fixtures shared across the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _feature_cache_outside_home(tmp_path_factory):
    """Keep the selector's default feature cache (``~/.cache/vital``) out of the user's home."""
    os.environ["VITAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("vital-cache"))


@pytest.fixture
def shared_data() -> Path:
    """The read-only reference data beside the project; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
