"""Registered protocols (``evalsuite list protocols``)."""
from protocols import market1501_reid  # noqa: F401  (registration)
from protocols import image_quality  # noqa: F401  (registration)
from protocols import person_recognition  # noqa: F401  (registration)
from protocols import face_identification  # noqa: F401  (registration)
from protocols import detection_train, detection_validate  # noqa: F401  (registration)
from protocols import lfw_verification  # noqa: F401  (registration)
