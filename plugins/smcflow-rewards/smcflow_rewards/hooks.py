"""Entry point of the plugin (group ``smcflow``): the ``smcflow_rewards`` hook."""
from smcflow.plugins import hookimpl

from .basic import indicator, linear, quadratic, weighted_sum


@hookimpl
def smcflow_rewards():
    from .digits import digits_log_prob, digits_vote

    return {
        "linear": linear,
        "quadratic": quadratic,
        "indicator": indicator,
        "weighted_sum": weighted_sum,
        "digits_log_prob": digits_log_prob,
        "digits_vote": digits_vote,
    }
