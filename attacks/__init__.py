"""Threat models and attackers (registered in ``evalsuite.registry.ATTACKS``)."""
from attacks import threat_models  # noqa: F401  (registration)
