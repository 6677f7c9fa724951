"""Architecture name -> model class."""
from jax_impl.models.alexnet import AlexNet
from jax_impl.models.attention import MHA
from jax_impl.models.bert import bert
from jax_impl.models.densenet import DenseNet
from jax_impl.models.efficientnet import EfficientNet
from jax_impl.models.gpt2 import GPT2LMHeadModel
from jax_impl.models.t5 import T5ForConditionalGeneration
from jax_impl.models.lenet5 import LeNet5
from jax_impl.models.mlp import MLP
from jax_impl.models.perceptron import Perceptron
from jax_impl.models.recurrent import GRU, LSTM, RNN, CharLM
from jax_impl.models.resnet import ResNet
from jax_impl.models.seq2seq import Bahdanau, Luong
from jax_impl.models.transformer import Seq2SeqTransformer
from jax_impl.models.vgg import VGG

MODELS = {"perceptron": Perceptron, "mlp": MLP, "lenet5": LeNet5, "alexnet": AlexNet,
          **dict.fromkeys(("vgg11", "vgg11_bn", "vgg16", "vgg16_bn"), VGG),
          **dict.fromkeys(("resnet18", "resnet34", "resnet50", "resnet101"), ResNet),
          "densenet121": DenseNet, "efficientnet_b0": EfficientNet,
          "rnn": RNN, "lstm": LSTM, "gru": GRU, "char_lm": CharLM,
          "seq2seq_bahdanau": Bahdanau, "seq2seq_luong": Luong,
          "mha": MHA, "transformer": Seq2SeqTransformer,
          "bert": bert,
          "gpt2": GPT2LMHeadModel, "t5": T5ForConditionalGeneration}
