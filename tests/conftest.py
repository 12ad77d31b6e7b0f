"""pytest configuration: the flag that rewrites golden files."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite tests/golden/*.out from the current output")


@pytest.fixture
def update_goldens(request):
    return request.config.getoption("--update-goldens")
