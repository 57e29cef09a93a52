"""DataFrames in, matplotlib figures out. No file I/O here except what callers do with the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def curve_figure(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    *,
    base_level: bool = True,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hue_label: str = "",
    phase_col: str = "phase",
):
    """Mean over seeds of ``y`` against ``x``, one line per ``hue`` value, ±1 s.d. shading.

    Rows with ``phase == "base"`` give the dashed base-model level (as the paper's Fig. 4).
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    curves = df[df[phase_col] != "base"] if phase_col in df.columns else df
    hues = sorted(curves[hue].unique())
    cmap = plt.get_cmap("viridis")
    for i, h in enumerate(hues):
        g = curves[curves[hue] == h].groupby(x)[y]
        mean, std = g.mean(), g.std().fillna(0.0)
        color = cmap(0.15 + 0.7 * i / max(1, len(hues) - 1))
        ax.plot(mean.index, mean.values, marker="o", ms=3, color=color, label=f"{hue_label or hue} = {h}")
        ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=color, alpha=0.15, lw=0)
    if base_level and phase_col in df.columns and (df[phase_col] == "base").any():
        level = df[df[phase_col] == "base"][y].mean()
        ax.axhline(level, ls="--", color="0.3", lw=1, label="base model")
    xs = curves[x]
    if len(xs) and xs.min() >= 0 and xs.max() > 20 * max(1, np.sort(xs.unique())[1] if len(xs.unique()) > 1 else 1):
        ax.set_xscale("symlog", linthresh=max(1, float(np.sort(xs.unique())[1]) if len(xs.unique()) > 1 else 1))
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
