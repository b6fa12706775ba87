"""pytest settings shared by the tests: the ``cuda`` marker (``pytest -m cuda`` selects the tests
that need a GPU; tools/gpu_check.py runs them)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one); run with pytest -m cuda")
