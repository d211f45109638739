"""Scaffolding for tests, benchmarks and `mmtune make-tiny`: tiny random models of every family, saved like Hub
checkpoints. No component imports this package (tests/test_import_layers.py checks it)."""
