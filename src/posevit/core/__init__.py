"""The small core every stage stands on: the config schema, errors, class labels, precision, paths, hashing.

It imports nothing else of posevit's; everything else may import it.
"""
