"""JAX / Flax NNX implementations, channels-last."""
