"""Sweeps over settings and seeds: the Hydra multirun entry (`python -m posevit.sweep`) and the summary
(t intervals across seeds, plot, workbook; `python -m posevit.sweep.report`)."""
