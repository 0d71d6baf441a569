"""Built-in metrics; importing this package registers their specs in ``evalsuite.registry.METRICS``."""
from evalsuite.metrics.quality import QUALITY_METRICS, image_quality_scores
from evalsuite.metrics.reid import REID_METRICS, ReidScores, evaluate_reid, pairwise_distance
from evalsuite.metrics.spec import MetricSpec, metric_spec, register_metric

__all__ = ["QUALITY_METRICS", "REID_METRICS", "image_quality_scores", "MetricSpec", "ReidScores", "evaluate_reid", "metric_spec", "pairwise_distance", "register_metric"]
