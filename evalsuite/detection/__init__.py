"""Detectors and helpers of the downstream-detection protocols (Paper A / D / F).

- :mod:`evalsuite.detection.trainable`: torchvision FCOS / RetinaNet / Faster R-CNN with a
  small FPN backbone, built from scratch (or on user-supplied ImageNet backbone weights),
  trained and run on :class:`~evalsuite.data.detection.DetectionSplit` images;
- :mod:`evalsuite.detection.pretrained`: torchvision's COCO detectors (Faster R-CNN, RetinaNet,
  FCOS, Mask / Keypoint R-CNN) with the state dict the user supplies, labels mapped by name;
- :mod:`evalsuite.detection.offline`: detectors that work without downloads on real images:
  dlib's HOG and CNN face detectors, OpenCV's HOG people detector;
- :mod:`evalsuite.detection.instances`: per-instance anonymization regions (person masks,
  face boxes) and the per-instance application of an anonymizer.
"""
