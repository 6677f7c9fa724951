"""Architecture name -> model class."""
from jax_impl.models.lenet5 import LeNet5
from jax_impl.models.mlp import MLP
from jax_impl.models.perceptron import Perceptron

MODELS = {"perceptron": Perceptron, "mlp": MLP, "lenet5": LeNet5}
