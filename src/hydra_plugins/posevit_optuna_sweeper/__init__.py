"""posevit's Hydra Optuna sweeper: the stock one with pruned trials recorded as PRUNED and resumable studies
(the logic is posevit.sweep.search; Hydra loads sweepers only from the hydra_plugins package)."""
