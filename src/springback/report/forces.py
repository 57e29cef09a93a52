"""Figures of alignment dynamics (forces, narrowness) and rehearsal priming (SPEC §5, our formulation of P2).

Each function takes a DataFrame of records (or an analysis table) and returns a Figure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .figures import plt


def dynamics_forces_figure(sub: pd.DataFrame, world: str, window_examples: int):
    """Three panels for one world's network runs: S along align | opposing (one line per seed and
    narrowness), the forces during opposing fine-tuning, and the force against the measured ΔS."""
    cmap = plt.get_cmap("viridis")
    ks = sorted(sub.narrowness.unique(), key=lambda k: (k == 0, k))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, k in enumerate(ks):
        color = cmap(0.1 + 0.75 * i / max(1, len(ks) - 1))
        label = f"k = {k or 'all'} templates"
        # One thin line per seed: the align stage stops at a different example count in each.
        for j, (seed, g) in enumerate(sub[sub.narrowness == k].groupby("seed")):
            g = g.sort_values(["stage", "n_examples"])
            al, op = g[g.stage == "align"], g[g.stage == "opposing"]
            n_al = float(al.n_examples.max())
            axes[0].plot(list(al.n_examples) + list(op.n_examples + n_al), list(al.score_S) + list(op.score_S),
                         color=color, lw=1, alpha=0.8, label=label if j == 0 else None)
            axes[0].plot([n_al], [float(op.score_S.iloc[0])], marker="|", color=color, ms=8)
            axes[1].plot(op.n_examples, op.f_rebound, color=color, lw=1, alpha=0.8,
                         label=f"F_rebound, {label}" if j == 0 else None)
            axes[1].plot(op.n_examples, op.f_drive, color=color, ls=":", lw=0.8)
    axes[0].axhline(0, color="0.7", lw=0.6)
    axes[0].set(xlabel="examples (align | opposing; tick = switch)", ylabel="S = log(π⁺/π⁻)",
                title=f"dynamics · {world}: S (one line per seed)")
    axes[1].axhline(0, color="0.7", lw=0.6)
    axes[1].set(xlabel="opposing examples", ylabel="force (per unit η)",
                title="forces during opposing fine-tuning\n(solid F_rebound, dotted F_drive)")
    w = sub[np.isfinite(sub.delta_S.astype(float))]
    for stage, marker in (("align", "o"), ("opposing", "s")):
        h = w[w.stage == stage]
        axes[2].scatter(h.f_total, h.delta_S, s=8, marker=marker, alpha=0.6, label=stage)
    axes[2].axhline(0, color="0.7", lw=0.6)
    axes[2].axvline(0, color="0.7", lw=0.6)
    axes[2].set(xlabel="F_drive + F_rebound at window start", ylabel=f"measured ΔS over {window_examples} examples",
                title="predicted direction vs measured ΔS")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def rebound_speed_figure(tab: pd.DataFrame):
    """Rebound speed (100 / examples to lose half the gain) against C_A after alignment (see
    :func:`springback.analysis.curves.half_gain_table`), coloured by log2 templates."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    sc = None
    for world, marker in zip(sorted(tab.world.unique()), "os^v"):
        g = tab[tab.world == world]
        sc = ax.scatter(g.collision_A_aligned, g.rebound_speed_per100, c=np.log2(g.n_templates), cmap="viridis",
                        marker=marker, label=world)
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="log2 aligned templates")
    ax.set_xscale("log")
    ax.set(xlabel="C_A after alignment (collision probability)", ylabel="rebound speed (100 / examples to lose half the gain)",
           title="narrowness vs rebound speed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def priming_stages_figure(sub: pd.DataFrame, world: str):
    """One world's priming runs: stage 1 (align), stage 2 (back to S₀), stage 3 primed (solid)
    against the never-aligned control (dashed), one colour per seed; S₀ dashed grey."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    cmap = plt.get_cmap("tab10")
    for i, (seed, g) in enumerate(sub.groupby("seed")):
        color = cmap(i % 10)
        s1 = g[g.stage.isin(["base", "align"])].sort_values("n_examples")
        n1 = float(s1.n_examples.max())
        s2 = g[(g.stage == "return") & (~g.bisect.astype(bool))].sort_values("n_examples") if "bisect" in g else g.iloc[0:0]
        stop = g[g.stage == "stop"]
        n_stop = float(stop.n_examples.iloc[0]) if len(stop) and math.isfinite(stop.n_examples.iloc[0]) else float("nan")
        x2 = list(n1 + s2.n_examples) + ([n1 + n_stop] if math.isfinite(n_stop) else [])
        y2 = list(s2.score) + ([float(stop.score.iloc[0])] if math.isfinite(n_stop) else [])
        ax.plot(s1.n_examples, s1.score, color=color, lw=1.2, label=f"seed {seed}: primed (stages 1–3)")
        ax.plot(x2, y2, color=color, lw=1.2)
        if math.isfinite(n_stop):
            x3 = n1 + n_stop
            re = g[g.stage == "realign"].sort_values("n_examples")
            p, c = re[re.arm == "primed"], re[re.arm == "control"]
            ax.plot(x3 + p.n_examples, p.score, color=color, lw=1.2)
            ax.plot(x3 + c.n_examples, c.score, color=color, lw=1.2, ls="--", label=f"seed {seed}: control (base, stage 3)")
            ax.axvline(x3, color=color, lw=0.5, ls=":")
        ax.axvline(n1, color="0.6", lw=0.5, ls=":")
    base = sub[sub.stage == "base"].score.mean()
    ax.axhline(base, color="0.3", ls="--", lw=0.8, label="base S₀ (mean)")
    kind = str(sub.score_kind.dropna().iloc[0]) if "score_kind" in sub and sub.score_kind.notna().any() else "score"
    ylabel = {"exact_S": "S = log(π⁺/π⁻) (exact)", "sampled_rate": "sampled aligned rate"}.get(kind, kind)
    ax.set(xlabel="examples: align | opposing (to S₀) | re-align", ylabel=ylabel, title=f"rehearsal priming · {world}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False, ncol=2)
    fig.tight_layout()
    return fig
