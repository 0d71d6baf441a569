"""Registered protocols (``evalsuite list protocols``)."""
from protocols import market1501_reid  # noqa: F401  (registration)
from protocols import image_quality  # noqa: F401  (registration)
from protocols import person_recognition  # noqa: F401  (registration)
