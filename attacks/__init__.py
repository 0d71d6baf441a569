"""Threat models and attackers (registered in ``evalsuite.registry.ATTACKS``)."""
from attacks import face_recognizer, threat_models  # noqa: F401  (registration)
