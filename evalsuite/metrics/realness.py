"""Realness fooling rate: a learned stand-in for the seeds' human perceptual study (HPS).

Sun et al. (2018, Table 2) showed workers real and inpainted images for one second each;
original images were judged real 93% of the time, and an obfuscation's HPS score is the
share of its images judged real. Here the judge is a real-vs-anonymized classifier
(:class:`~evalsuite.metrics.classifier.SmallCNN`) trained on held-out data: the original
images of the training split (real) against the same anonymizer's output on that split
(anonymized). On the disjoint evaluation split its decision threshold is set so that it
accepts ``accept_originals`` (0.93, the human baseline) of the original images; the fooling
rate is the share of anonymized evaluation images it accepts as real at that threshold.
An anonymizer whose output the critic cannot tell from originals scores about 0.93; one it
always catches scores 0. The identity ("none") is not trained: its images are the originals,
so :func:`identity_fooling_rate` gives its value exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evalsuite.metrics.classifier import SmallCNN, predict, train_classifier
from evalsuite.metrics.spec import MetricSpec, register_metric

HUMAN_BASELINE = 0.93  # share of original images judged real in Sun et al.'s HPS


@dataclass(frozen=True)
class RealnessConfig:
    accept_originals: float = HUMAN_BASELINE
    epochs: int = 15
    batch_size: int = 32
    lr: float = 5e-3
    width: int = 8


def acceptance_threshold(real_scores: np.ndarray, accept: float) -> float:
    """The largest score threshold at which at least ``accept`` of ``real_scores`` are accepted (score >= threshold)."""
    if not 0 < accept <= 1:
        raise ValueError(f"accept must be in (0, 1], got {accept}")
    scores = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        return math.nan
    k = max(1, math.ceil(accept * scores.size - 1e-9))
    return float(scores[k - 1])


def fooling_rate_from_scores(real_scores: np.ndarray, fake_scores: np.ndarray, accept: float = HUMAN_BASELINE) -> tuple[float, float]:
    """(share of ``fake_scores`` accepted as real, threshold) at the threshold accepting ``accept`` of the originals."""
    threshold = acceptance_threshold(real_scores, accept)
    fake = np.asarray(fake_scores, dtype=np.float64)
    if fake.size == 0 or math.isnan(threshold):
        return math.nan, threshold
    return float((fake >= threshold).mean()), threshold


def identity_fooling_rate(num_images: int, accept: float = HUMAN_BASELINE) -> float:
    """The fooling rate of images identical to the originals: any critic (without tied scores)
    accepts them exactly as often as the originals, ``ceil(accept * n) / n``; no training needed."""
    if num_images <= 0:
        return math.nan
    return max(1, math.ceil(accept * num_images - 1e-9)) / num_images


def realness_scores(model: SmallCNN, images: torch.Tensor, device: str = "cpu") -> np.ndarray:
    """The critic's "real" margin (logit real - logit anonymized) per image."""
    (logits,) = predict(model, images, device=device)
    return (logits[:, 1] - logits[:, 0]).numpy().astype(np.float64)


def train_realness_critic(
    originals: torch.Tensor, anonymized: torch.Tensor, config: RealnessConfig, seed: int, device: str = "cpu", description: str = "realness critic"
) -> SmallCNN:
    """A binary critic trained on originals (label 1) against anonymized images (label 0)."""
    torch.manual_seed(int(seed))
    model = SmallCNN([2], width=config.width)
    images = torch.cat([originals, anonymized])
    labels = torch.cat([torch.ones(originals.shape[0], dtype=torch.long), torch.zeros(anonymized.shape[0], dtype=torch.long)])
    return train_classifier(model, images, labels, config.epochs, config.batch_size, config.lr, seed, device, description)


def fooling_rate(
    train_originals: torch.Tensor,
    train_anonymized: torch.Tensor,
    eval_originals: torch.Tensor,
    eval_anonymized: torch.Tensor,
    config: RealnessConfig = RealnessConfig(),
    seed: int = 0,
    device: str = "cpu",
    description: str = "realness critic",
) -> dict[str, float]:
    """Train the critic on the training pair, then ``{"fooling_rate", "critic_threshold", "critic_auc"}`` on the evaluation pair."""
    from sklearn.metrics import roc_auc_score

    model = train_realness_critic(train_originals, train_anonymized, config, seed, device, description)
    real = realness_scores(model, eval_originals, device)
    fake = realness_scores(model, eval_anonymized, device)
    rate, threshold = fooling_rate_from_scores(real, fake, config.accept_originals)
    labels = np.r_[np.ones(real.size), np.zeros(fake.size)]
    auc = float(roc_auc_score(labels, np.r_[real, fake])) if real.size and fake.size else math.nan
    return {"fooling_rate": rate, "critic_threshold": threshold, "critic_auc": auc}


register_metric(MetricSpec(
    "fooling_rate",
    "HPS proxy: share of anonymized images a real-vs-anonymized critic accepts as real at the threshold accepting 93% of originals",
    higher_is_better=True, category="quality", unit="rate", label="Fooling",
))
