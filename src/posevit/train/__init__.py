"""Training: the LightningModule, the datamodule and its augmentation, the loop that leaves a bundle, curves."""
