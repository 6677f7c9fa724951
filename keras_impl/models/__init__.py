"""Architecture name -> model class."""
from keras_impl.models.lenet5 import LeNet5
from keras_impl.models.mlp import MLP
from keras_impl.models.perceptron import Perceptron

MODELS = {"perceptron": Perceptron, "mlp": MLP, "lenet5": LeNet5}
