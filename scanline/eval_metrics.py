"""Classification metrics computed on host from collected eval outputs.

Used by `scanline.task.ScanlineTask.summarize_eval` and tests. Exact and dependency-free:
balanced accuracy (mean per-class recall, as sklearn's `balanced_accuracy_score`), macro
one-vs-rest AUROC from ranks with ties averaged (the Mann-Whitney U statistic, equal to
sklearn's `roc_auc_score(multi_class="ovr", average="macro")`) and confusion matrices. Pictures
come from `common.plots`.
"""

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted], int64 [K, K]."""
    return np.bincount(
        labels.astype(np.int64) * num_classes + preds.astype(np.int64),
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for a class with no examples."""
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present (sklearn's definition)."""
    recall = per_class_recall(cm)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else float("nan")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x`, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Boundaries of runs of equal values in sorted order.
    new_run = np.r_[True, xs[1:] != xs[:-1]]
    run_id = np.cumsum(new_run) - 1
    starts = np.nonzero(new_run)[0]
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), np.float64)
    ranks[order] = mean_rank[run_id]
    return ranks


def binary_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties counted 1/2.

    NaN when one side is empty (AUROC is undefined there).
    """
    positive = positive.astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, np.float64))
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def macro_ovr_auroc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean over classes with both positives and negatives, per-class AUROC [K])."""
    per_class = np.array([binary_auroc(labels == k, probs[:, k]) for k in range(probs.shape[1])])
    valid = ~np.isnan(per_class)
    return (float(per_class[valid].mean()) if valid.any() else float("nan")), per_class
