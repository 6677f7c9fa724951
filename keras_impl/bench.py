"""Benchmark steps for Keras on TensorFlow: inference and one SGD training step, eager or
compiled with `tf.function(jit_compile=True)` (XLA).

Every step returns only after its outputs are materialised on the host.
"""

import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import tensorflow as tf

from parity import layouts
from keras_impl.api import dtype_of, loss_function


def device_name(device: str) -> str:
    if device == "gpu":
        return tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
            "device_name", "gpu")
    return "cpu"


def to_device(model, arrays, device: str):
    """Channels-last inputs (floats in the model's dtype), as tensors on the device, once, before timing."""
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        return [tf.constant(layouts.activation_to_native("keras", a, model.spec.input_kind),
                            dtype=dtype_of(model) if a.dtype.kind == "f" else None) for a in arrays]


def inference_step(model, compiled: bool):
    def forward(x, extra):  # the main input, the other named inputs
        return model(x, **extra, training=False)[model.spec.output_names[0]]

    run = tf.function(forward, jit_compile=True) if compiled else forward

    def step(x, extra):
        outputs = run(x, extra)
        outputs.numpy()  # materialise: the step is done
        return outputs

    return step


def train_step(model, compiled: bool, learning_rate: float):
    """forward, loss, GradientTape backward and a keras.optimizers.SGD update, training mode."""
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    loss_fn = loss_function(model.spec.loss, dtype_of(model))

    def update(x, extra, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(x, **extra, training=True)[model.spec.loss_output], y)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    run = tf.function(update, jit_compile=True) if compiled else update

    def step(x, extra, y):
        return float(run(x, extra, y))  # a host read: the step is done

    return step


def peak_memory_bytes(device: str):
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] if device == "gpu" else None


def matmul_step(n: int):
    """A float32 n x n matmul on the CPU, finished when the call returns (parity.bench times it)."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    return lambda: (a @ b).numpy()


def thread_settings() -> dict:
    return {"tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            "tensorflow_version": tf.__version__, "keras_version": keras.__version__}
