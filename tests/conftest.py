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


MAX_MAPPINGS = 16_000  # of vm.max_map_count's 65530


def _memory_maps() -> int:
    """The process's memory mappings (Linux; 0 where /proc is absent)."""
    if not os.path.exists("/proc/self/maps"):
        return 0
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.fixture(autouse=True)
def _compiled_code_released(request):
    """XLA:CPU keeps ~3 memory mappings per live executable, and JAX caches every executable it
    compiles (each eager op at each shape, each jitted step): test_parity.py alone leaves ~38,000
    mappings, and over the whole suite they reached the kernel's vm.max_map_count (65530), where
    the next compile segfaulted (CI exit 139). Clear JAX's caches whenever the count passes
    MAX_MAPPINGS."""
    yield
    if _memory_maps() > MAX_MAPPINGS:
        import jax

        before = _memory_maps()
        jax.clear_caches()
        if os.environ.get("PARITY_LOG_MAPS"):
            with open(os.environ["PARITY_LOG_MAPS"], "a") as log:
                log.write(f"{request.node.nodeid} {before} -> {_memory_maps()}\n")


@pytest.fixture(autouse=True)
def _x64_stays_scoped():
    """float64 JAX is enabled only inside `jax.enable_x64` scopes: a test that leaks it changes
    what every later test computes."""
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


@pytest.fixture(scope="session")
def transformers():
    """Hugging Face transformers, the reference of BERT, GPT-2 and T5 (a test-only dependency);
    a visible skip if it cannot load."""
    try:
        return parity.reference.import_transformers()
    except parity.FrameworkError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def cases(request, transformers):
    """For the modules of transformers' models (test_bert, test_gpt2, test_t5), which define
    `case_spec(key)`: (spec, transformers' model, its state, inputs, targets) per (key, dtype),
    built once (hf_models.hf_model)."""
    from hf_models import hf_model, hf_state

    built = {}

    def case(key, dtype):
        if (key, dtype) not in built:
            spec = request.module.case_spec(key)
            model = hf_model(transformers, spec, dtype)
            inputs, targets = parity.example_batch(spec, 4, 0, dtype)
            built[key, dtype] = spec, model, hf_state(model), inputs, targets
        return built[key, dtype]
    return case


@pytest.fixture(scope="module")
def models(cases):
    """Our model of each (key, framework, dtype) of `cases`, built once from transformers' state."""
    built = {}

    def get(key, framework, dtype):
        if (key, framework, dtype) not in built:
            spec, _, state, _, _ = cases(key, dtype)
            built[key, framework, dtype] = parity.build(framework, spec, state)
        return built[key, framework, dtype]
    return get
