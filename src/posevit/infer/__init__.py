"""Using a trained model: where it comes from, the predictor on each backend, files and folders in batches."""
