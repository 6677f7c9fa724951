"""pytest-benchmark suite options. `--bench-preset tiny --benchmark-disable` is the smoke run
the default test suite performs (tests/test_bench_smoke.py)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--bench-preset", default=None, help="preset of every architecture (default: reference size)")
    parser.addoption("--bench-batch", type=int, default=32)
    parser.addoption("--bench-device", choices=("cpu", "gpu"), default="cpu")
