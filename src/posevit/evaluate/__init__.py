"""Evaluation of a bundle on the test split: predictions, torchmetrics scores, plots and the workbook."""
