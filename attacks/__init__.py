"""Threat models and attackers (registered in ``evalsuite.registry.ATTACKS``)."""
from attacks import face_recognizer, threat_models  # noqa: F401  (registration)
from attacks import face_arcface, face_dlib  # noqa: F401  (dlib / ArcFace recognizers)
from attacks import face_cnn  # noqa: F401  (the `cnn` face recognizer trained from scratch)
from attacks import face_iresnet  # noqa: F401  (the `iresnet` ArcFace backbone from a weight file, fine-tuned)
