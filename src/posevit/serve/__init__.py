"""Serving a model to people and programs: the JSON API, the page, the micro-batcher, metrics, settings.

Loads without Lightning, `datasets` or DVC (a test checks), so a server needs only the runtime stack.
"""
