"""Keras 3 implementations, channels-last. Uses the TensorFlow backend unless the user chose one."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
