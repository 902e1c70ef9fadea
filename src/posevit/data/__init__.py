"""Data: sources (hub, local copies, image folders, the demo generator), decoding, splits, the processed store."""
