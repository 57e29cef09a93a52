"""Figures of the resistance experiment (P1 Table 1): forward − inverse heatmaps and loss curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from .figures import plt


def forward_inverse_heatmap(cells: pd.DataFrame, models: list[str], label: str):
    """One panel per world, models × checkpoint pairs, coloured by forward − inverse (> 0 = inverse
    easier) with the number of seeds holding. ``cells``: rows of
    :func:`springback.analysis.paired.cell_table`."""
    worlds = sorted(cells.world.unique())
    pairs = sorted(cells.pair.unique())
    vmax = float(np.nanmax(np.abs(cells["diff"]))) or 1e-9
    fig, axes = plt.subplots(1, len(worlds), figsize=(3.0 * len(worlds) + 0.8, 0.75 * len(models) + 1.9), squeeze=False)
    im = None
    for n_ax, (ax, world) in enumerate(zip(axes[0], worlds)):
        grid = np.full((len(models), len(pairs)), np.nan)
        for _, c in cells[cells.world == world].iterrows():
            r, k = models.index(c["model"]), pairs.index(c["pair"])
            grid[r, k] = c["diff"]
            ax.text(k, r, f"{c['diff']:+.3f}\n{c['n_seeds_holding']}/{c['n_seeds']}", ha="center", va="center",
                    fontsize=7, color="white" if abs(c["diff"]) > 0.6 * vmax else "black")
        im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
        ax.set_xticks(range(len(pairs)), [f"θ{p.replace('-', '↔θ')}" for p in pairs], fontsize=8)
        ax.set_yticks(range(len(models)), models if n_ax == 0 else [""] * len(models), fontsize=8)
        ax.set_title(world, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="forward − inverse")
    fig.suptitle(f"resistance · {label}: forward − inverse (> 0 = inverse easier; seeds holding)", fontsize=9, y=1.04)
    return fig


def loss_curves_figure(ft: pd.DataFrame, model: str):
    """Training-loss curves (mean over seeds) of every pair and direction, one panel per world."""
    worlds = sorted(ft.world.unique())
    fig, axes = plt.subplots(1, len(worlds), figsize=(3.6 * len(worlds), 3.0), squeeze=False)
    for ax, world in zip(axes[0], worlds):
        sub = ft[(ft.world == world) & (ft["model"] == model)]
        pairs = sorted(sub.pair.unique())
        for (pair, direction), g in sub.groupby(["pair", "direction"]):
            curves = np.array([np.asarray(c, float) for c in g.curve_loss])
            x = np.asarray(g.curve_n_examples.iloc[0], float)
            ax.plot(x, curves.mean(0), ls="-" if direction == "forward" else "--", lw=1.2,
                    color=plt.get_cmap("tab10")(pairs.index(pair)), label=f"{pair} {direction}")
        ax.set_title(f"{world} · {model}", fontsize=9)
        ax.set_xlabel("examples seen")
        ax.set_ylabel("training loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


# The resistance experiment's heatmaps: records column -> its label.
HEATMAPS = {
    "mean_loss": "mean training loss",
    "excess_mean_loss": "excess loss (− writer's own loss)",
    "kl_change": "KL change toward target (nats)",
}


def resistance_figures(df: pd.DataFrame, sizes: list[str]) -> list:
    """Forward − inverse heatmaps of :data:`HEATMAPS` (models ordered as ``sizes``, then the rest) and
    the loss curves of the last model, as [(file stem, Figure)]."""
    from ..analysis.paired import cell_table, paired

    out = []
    for metric, label in HEATMAPS.items():
        p = paired(df, metric)
        if not len(p):
            continue
        tab = pd.DataFrame(cell_table(p))
        present = set(tab["model"])
        models = [s for s in sizes if s in present] + [s for s in sorted(present) if s not in sizes]
        out.append((f"resistance_heatmap_{metric}", forward_inverse_heatmap(tab, models, label)))
    ft = df[df.stage == "finetune"] if "stage" in df.columns else df.iloc[0:0]
    if len(ft) and "curve_loss" in ft.columns:
        out.append(("resistance_loss_curves", loss_curves_figure(ft, ft["model"].iloc[-1])))
    return out
