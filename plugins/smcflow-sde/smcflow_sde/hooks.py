"""Entry point of the plugin (group ``smcflow``): the ``smcflow_estimators`` hook."""
from functools import partial

from smcflow.plugins import hookimpl

from .local import KramersMoyal
from .neural import NeuralLeastSquares
from .ou import OrnsteinUhlenbeckMLE


@hookimpl
def smcflow_estimators():
    return {
        "km_kernel": partial(KramersMoyal, method="kernel"),
        "km_binned": partial(KramersMoyal, method="binned"),
        "neural": NeuralLeastSquares,
        "ou_mle": OrnsteinUhlenbeckMLE,
    }
