"""The training fixtures (small demo data, tiny models) for cv tests."""

from tests.training.conftest import demo_small, tiny_models  # noqa: F401
