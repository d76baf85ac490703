"""common.stats: exact scores against hand computations, the pairwise definition and scipy."""

import numpy as np

from common import stats as em


def test_auroc_with_ties_by_hand():
    # positives: 0.8, 0.4, 0.4 ; negatives: 0.4, 0.1
    # pairs (pos > neg): 0.8>0.4, 0.8>0.1, 0.4>0.1, 0.4>0.1 = 4 ; ties 0.4=0.4 twice = 2 * 0.5
    # AUROC = (4 + 1) / (3 * 2) = 5/6
    pos = np.array([1, 1, 1, 0, 0], bool)
    scores = np.array([0.8, 0.4, 0.4, 0.4, 0.1])
    assert em.binary_auroc(pos, scores) == 5 / 6
    assert em.binary_auroc(pos, -scores) == 1 / 6
    assert np.isnan(em.binary_auroc(np.ones(3, bool), np.arange(3.0)))


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    pos = rng.uniform(size=200) < 0.3
    scores = np.round(rng.normal(size=200) + pos, 1)  # rounding makes many ties
    p, n = scores[pos], scores[~pos]
    pairwise = ((p[:, None] > n[None, :]) + 0.5 * (p[:, None] == n[None, :])).mean()
    assert abs(em.binary_auroc(pos, scores) - pairwise) < 1e-12


def test_average_ranks():
    np.testing.assert_array_equal(
        em.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2]
    )


def test_macro_ovr_auroc_and_balanced_accuracy():
    labels = np.array([0, 0, 1, 1, 2])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
    )
    macro, per = em.macro_ovr_auroc(labels, probs)
    # class 0: pos {0.7, 0.4}, neg {0.3, 0.1, 0.2} -> all 6 pairs won -> 1.0
    # class 1: pos {0.6, 0.8}, neg {0.2, 0.5, 0.2} -> 6/6 -> 1.0
    # class 2: pos {0.6}, neg {0.1 x4} -> 1.0
    np.testing.assert_array_equal(per, [1.0, 1.0, 1.0])
    assert macro == 1.0
    preds = probs.argmax(1)  # [0, 1, 1, 1, 2]
    cm = em.confusion_matrix(labels, preds, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    assert em.balanced_accuracy(cm) == (0.5 + 1 + 1) / 3
    np.testing.assert_array_equal(em.per_class_recall(cm), [0.5, 1.0, 1.0])


def test_balanced_accuracy_skips_absent_classes():
    cm = em.confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 4)
    assert em.balanced_accuracy(cm) == 0.75


def test_ranks_and_spearman_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    a, b = np.round(rng.normal(size=300), 1), rng.normal(size=300)
    np.testing.assert_allclose(em.average_ranks(a), stats.rankdata(a))
    assert abs(em.spearman(a, b) - stats.spearmanr(a, b)[0]) < 1e-12
    assert em.spearman(np.ones(5), np.arange(5.0)) == 0.0  # constant side: 0, not nan
