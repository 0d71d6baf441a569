"""Built-in metrics; importing this package registers their specs in ``evalsuite.registry.METRICS``."""
from evalsuite.metrics.quality import QUALITY_METRICS, image_quality_scores
from evalsuite.metrics.reid import REID_METRICS, ReidScores, evaluate_reid, pairwise_distance
from evalsuite.metrics.spec import MetricSpec, metric_spec, register_metric
from evalsuite.metrics.landmarks import LDSR_METRIC, landmark_detection_success  # noqa: F401  (registers ldsr)
from evalsuite.metrics import attributes, fidelity, leak, perceptual, realness  # noqa: F401  (register image-quality metrics)
from evalsuite.metrics import attention, person_recognition  # noqa: F401  (register head_contribution, head / body+head accuracy)
from evalsuite.metrics import identification  # noqa: F401  (register top1, roc_auc, tpr_at_fpr1, tpr_at_fpr01)
from evalsuite.metrics import detection  # noqa: F401  (register ap, ap50, ap75, ap_person, ap_face)

__all__ = ["QUALITY_METRICS", "REID_METRICS", "image_quality_scores", "MetricSpec", "ReidScores", "evaluate_reid", "metric_spec", "pairwise_distance", "register_metric"]
