"""Serving a bundle to people and programs: where the model comes from, the predictor, the page, examples.

Loads without Lightning, `datasets` or DVC (a test checks), so a server needs only the runtime stack.
"""
