"""A real Ray cluster on loopback for the distributed tests (tests/ray/cluster.py): the head with 2
CPUs (the workers' actors take one each), stopped after the session, and one-CPU nodes added where
a test needs them. Without Ray installed the tests skip, unless LOADGEN_REQUIRE_RAY=1 (as in CI),
where that is a failure."""

from __future__ import annotations

import itertools
import os

import pytest

from ..servers.conftest import fake_engines  # noqa: F401  (the fake engine launchers, for the matrix on Ray)
from .cluster import ENV, HEAD_IP, RayNode, start_head, stop_all

REQUIRE_ENV = "LOADGEN_REQUIRE_RAY"


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> str:
    """The address (HOST:PORT) of a one-node Ray cluster with 2 CPUs."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"ray is not installed ({REQUIRE_ENV}=1): pip install '.[dev,ray]'", pytrace=False)
        pytest.skip("ray is not installed (pip install '.[dev,ray]')")
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)  # the runs under test are drivers of this cluster
    try:
        try:
            address = start_head(tmp_path_factory.mktemp("ray"))
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield address
    finally:
        stop_all()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: the next node's address (a removed node's is not used again)
_next_ip = itertools.count(int(HEAD_IP.rsplit(".", 1)[1]) + 1)


@pytest.fixture
def ray_node(ray_cluster):
    """Adds one-CPU nodes at 127.0.0.3, .4, ... to the cluster; each killed and gone after the test."""
    nodes: list[RayNode] = []

    def add() -> RayNode:
        nodes.append(RayNode(ray_cluster, f"127.0.0.{next(_next_ip)}"))
        return nodes[-1]

    try:
        yield add
    finally:
        for node in nodes:
            node.remove()
