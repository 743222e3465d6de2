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


@pytest.fixture(scope="session")
def _one_ray():
    """A local Ray of 2 CPUs with a small object store, started once for every test that needs one."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_ray(request, _one_ray):
    """The session's local Ray (its actors reserve fractions of a CPU); the test module's own classes (test
    encoders, say) reach the actors by value, as a module the workers cannot import."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(request.module)
    yield _one_ray
    cloudpickle.unregister_pickle_by_value(request.module)
