"""Architecture name -> model class."""
from pytorch_impl.models.lenet5 import LeNet5
from pytorch_impl.models.mlp import MLP
from pytorch_impl.models.perceptron import Perceptron

MODELS = {"perceptron": Perceptron, "mlp": MLP, "lenet5": LeNet5}
