"""Drift between what a served model answers and what it answered on its own test split (`posevit monitor`).

`sources` reads the two sides: the prediction log (`serve.prediction_log`, a folder or an S3 prefix of Parquet
files) and the version's test-split predictions (`metrics/predictions.csv`, from the registry or a file).
`drift` compares them with SciPy's tests, for the whole log and day by day; `report` writes the Markdown
report and its plot; `command` is the entry point. Torch-free: it runs in the serving install.
"""
