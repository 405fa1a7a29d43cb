"""Fixtures of the policy tests: the built-in engine, topology and catalog."""

from __future__ import annotations

import pytest
from policy_support import Ask, make_ask

from domicile.catalog.catalog import Catalog, load_catalog
from domicile.policy.engine import PolicyEngine
from domicile.residency.topology import Topology, load_topology


@pytest.fixture(scope="session")
def topology() -> Topology:
    """The built-in topology."""
    return load_topology()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The built-in catalog."""
    return load_catalog()


@pytest.fixture(scope="session")
def engine() -> PolicyEngine:
    """An engine on the built-in policies; never reloaded (tests that reload make their own)."""
    return PolicyEngine.load()


@pytest.fixture(scope="session")
def ask(topology: Topology) -> Ask:
    """Build Cedar requests on the built-in topology."""
    return make_ask(topology)
