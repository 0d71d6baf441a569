"""Built-in metrics; importing this package registers them in ``evalsuite.registry.METRICS``."""
from evalsuite.metrics.reid import REID_METRICS, ReidScores, evaluate_reid, pairwise_distance

__all__ = ["REID_METRICS", "ReidScores", "evaluate_reid", "pairwise_distance"]
