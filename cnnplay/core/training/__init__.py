"""Training (Qt-free): the Trainer, softmax cross-entropy, SGD/Adam/AdamW and
batch norm's training mode, exactly PyTorch's semantics in float32.

    from cnnplay import Trainer
    tr = Trainer(net, optimizer="sgd", lr=0.01, momentum=0.9)
    tr.fit(train, epochs=5, batch_size=32, test=test)

Initial weights (Network.reset_parameters, the app's "Reset weights") are
PyTorch's defaults per layer type, drawn from numpy.random.default_rng([seed,
layer index]): conv and linear weight and bias ~ U(-1/sqrt(fan_in),
1/sqrt(fan_in)) (what kaiming_uniform_(a=sqrt(5)) gives), fan_in = input
channels x kernel positions (conv) or input features (linear); batch and layer
norm weight 1, bias 0, running mean 0, running variance 1.
"""

from .loss import cross_entropy, log_softmax, softmax
from .optim import OPTIMIZERS
from .trainer import EpochResult, History, Trainer

__all__ = ["Trainer", "History", "EpochResult", "OPTIMIZERS", "cross_entropy", "softmax", "log_softmax"]
