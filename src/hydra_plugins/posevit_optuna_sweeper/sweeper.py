"""`hydra/sweeper=posevit_optuna`: hydra-optuna-sweeper's config plus a pruner and the trial number a job is for.

Hydra imports every module of hydra_plugins at start-up, so this one stays light (no optuna): the work is in
posevit.sweep.search, loaded when a sweep starts, as the stock plugin loads its _impl.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules before they are in sys.modules, where
# dataclasses look string annotations up.
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


@dataclass
class PosevitOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.posevit_optuna_sweeper.sweeper.PosevitOptunaSweeper"
    # An Optuna pruner, instantiate-style (e.g. optuna.pruners.MedianPruner); each trial's job builds it.
    pruner: Any = None
    # Run the composed config's own values of the searched keys as the first trial of a new study.
    baseline: bool = True
    # Set by the sweeper on each job's overrides: the number of the trial the job runs. Not for users.
    trial: Any = None


class PosevitOptunaSweeper(OptunaSweeper):
    def __init__(self, pruner: Any, baseline: bool, trial: Any, **stock: Any) -> None:
        from posevit.sweep.search import PruningOptunaSweeperImpl

        self.sweeper = PruningOptunaSweeperImpl(baseline=baseline, **stock)


ConfigStore.instance().store(
    group="hydra/sweeper", name="posevit_optuna", node=PosevitOptunaSweeperConf, provider="posevit"
)
