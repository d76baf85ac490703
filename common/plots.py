"""Figures every family logs: matplotlib figure -> image array, and the confusion matrix.

Images returned here are HWC uint8, ready for `EvalSummary.images` / `HookResult.images`
(the loop writes them to TensorBoard and as PNG).
"""

import textwrap
from collections.abc import Sequence

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_image(fig) -> np.ndarray:
    """Renders a matplotlib figure to HWC uint8 and closes it."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    pyplot().close(fig)
    return image


def confusion_matrix_image(
    counts: np.ndarray,
    class_names: Sequence[str],
    title: str = "",
    *,
    show_counts: bool = True,
) -> np.ndarray:
    """Row-normalised confusion matrix (rows: true class) with rates and, optionally, counts."""
    plt = pyplot()
    counts = np.asarray(counts, np.float64)
    k = counts.shape[0]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    size = max(4.0, 0.55 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size), dpi=80)
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    # Full names, wrapped at word breaks ("defects_bad_tip" -> "defects bad\ntip"), never cut.
    names = [
        "\n".join(textwrap.wrap(str(n).replace("_", " "), 14) or [""])
        for n in list(class_names)[:k]
    ]
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fontsize = 8 if k <= 6 else 6
    for t in range(k):
        for p in range(k):
            text = f"{rates[t, p]:.2f}"
            if show_counts:
                text += f"\n({int(counts[t, p])})"
            color = "white" if rates[t, p] > 0.5 else "black"
            ax.text(p, t, text, ha="center", va="center", fontsize=fontsize, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return figure_to_image(fig)
