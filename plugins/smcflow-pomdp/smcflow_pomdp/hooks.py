"""Entry point of the plugin (group ``smcflow``): belief metrics and POMDP models."""
from smcflow.plugins import hookimpl

from .lightdark import lightdark_1d
from .metrics import METRICS
from .models import rocksample, switching_tiger, tiger


@hookimpl
def smcflow_belief_metrics():
    return dict(METRICS)


@hookimpl
def smcflow_models():
    return {"tiger": tiger, "switching_tiger": switching_tiger, "rocksample": rocksample,
            "lightdark_1d": lightdark_1d}
