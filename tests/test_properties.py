"""Property test: any valid MLP spec keeps three-way parity."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity
from parity.specs.base import ACTIVATIONS

mlp_specs = st.builds(
    lambda in_features, hidden, classes, activation, slope, batch_norm: parity.spec(
        "mlp", "tiny", in_features=in_features, hidden_sizes=tuple(hidden), num_classes=classes,
        activation=activation, negative_slope=slope, batch_norm=batch_norm, dropout=0.0),
    in_features=st.integers(1, 24),
    hidden=st.lists(st.integers(1, 24), min_size=0, max_size=3),
    classes=st.integers(2, 7),
    activation=st.sampled_from(ACTIVATIONS),
    slope=st.sampled_from([0.01, 0.2, 0.5]),
    batch_norm=st.booleans(),
)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=mlp_specs, batch_size=st.integers(2, 9), dtype=st.sampled_from(["float32", "float64"]),
       train=st.booleans())
def test_random_mlp_specs_keep_parity(spec, batch_size, dtype, train):
    report = parity.compare(spec, dtype=dtype, train=train, batch_size=batch_size)
    assert report.passed, [c for c in report.checks if not c.passed][:3]
