"""Shared test settings: which tests run (quick by default, `--run-slow`, `--run-cluster`) and hypothesis profiles."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

# The quick profile runs a tenth of each property test's examples (see hypothesis_examples.examples); the full profile
# is hypothesis' own default of 100 and every test's stated count. `make test-all` passes --hypothesis-profile=full.
settings.register_profile("quick", max_examples=10)
settings.register_profile("full", max_examples=100)
settings.load_profile("quick")

OPT_IN = {
    "slow": ("--run-slow", "takes more than a few seconds (the tiny DAG's reruns, training, real Snakemake runs)"),
    "cluster": ("--run-cluster", "installs SLURM, munge and MariaDB with apt-get and starts their daemons"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Opt-in switches for the expensive tests, in xarray's style: without them `pytest` is the quick suite."""
    for marker, (flag, why) in OPT_IN.items():
        parser.addoption(flag, action="store_true", default=False, help=f"also run the tests marked {marker}: {why}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the opted-out tests with a reason that says how to run them."""
    for marker, (flag, _why) in OPT_IN.items():
        if config.getoption(flag):
            continue
        skip = pytest.mark.skip(reason=f"marked {marker}: runs with {flag} (make test-all)")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread: on two shared cores, OpenMP workers waiting for a busy core slow small ops a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
