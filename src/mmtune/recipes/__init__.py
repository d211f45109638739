"""Recipes: one module per verb (train, predict, cv, ensemble, submit, report, demo, ...), the only layer that
wires components together. The CLI and `mmtune.api` call recipes; components never import them.

A recipe checks its inputs before any work (`preflight`, light enough to run before torch loads), never rewrites
the config it was given, and returns what it resolved (the run's config) with its results.
"""
