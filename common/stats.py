"""Rank statistics and classification scores computed on host, shared by every family.

The loop's eval steps collect per-example outputs on device; families turn them into numbers
here, so one definition serves scanline (balanced accuracy, macro AUROC), ternary_vae (Spearman
correlations) and any new family. Ranks come from scipy; the scores follow sklearn's
definitions exactly (tested against hand computations and the pairwise definition).
"""

import math

import numpy as np
from scipy import stats as scipy_stats


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of the flattened `x`, tied values sharing the mean of their ranks."""
    return scipy_stats.rankdata(np.asarray(x).ravel(), method="average")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho: Pearson correlation of average ranks (as scipy.stats.spearmanr).

    0.0 (not nan) when either side is constant, so logged metrics stay finite.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(np.dot(ra, rb) / math.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted], int64 [K, K]."""
    return np.bincount(
        np.asarray(labels, np.int64) * num_classes + np.asarray(preds, np.int64),
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for a class with no examples."""
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present (sklearn's `balanced_accuracy_score`)."""
    recall = per_class_recall(cm)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else float("nan")


def binary_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties counted 1/2: the
    Mann-Whitney U statistic from average ranks. NaN when one side is empty."""
    positive = np.asarray(positive).astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, np.float64))
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def macro_ovr_auroc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean over classes with both positives and negatives, per-class AUROC [K]): sklearn's
    `roc_auc_score(multi_class="ovr", average="macro")` where every class is present."""
    per_class = np.array([binary_auroc(labels == k, probs[:, k]) for k in range(probs.shape[1])])
    valid = ~np.isnan(per_class)
    return (float(per_class[valid].mean()) if valid.any() else float("nan")), per_class
