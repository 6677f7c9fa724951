"""Deterministic numerics for every test: TF32 off in all three frameworks, JAX matmuls at
"highest" precision, fixed seeds. float64 in JAX is enabled per model by the adapter, only
inside float64 work."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import parity  # noqa: E402
import parity.reference  # noqa: E402

parity.set_deterministic()


@pytest.fixture(autouse=True)
def _seeded():
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True)
def _x64_stays_scoped():
    """float64 JAX is enabled only inside `jax.enable_x64` scopes: a test that leaks it changes
    what every later test computes (and has crashed XLA's compiler on this machine)."""
    import jax

    yield
    assert not jax.config.jax_enable_x64, "this test left jax_enable_x64 on"


@pytest.fixture(scope="session")
def torchvision():
    """torchvision, the CNNs' reference (a test-only dependency); a visible skip if it cannot load."""
    try:
        return parity.reference.import_torchvision()
    except parity.FrameworkError as err:
        pytest.skip(str(err))
