"""Benchmark settings, recorded in every result: thread counts and framework versions."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def environment_info():
    import jax
    import keras
    import tensorflow as tf
    import torch

    return {
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "jax": jax.__version__, "jax_devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(), "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    }
