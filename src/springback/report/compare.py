"""A comparison of runs as files: ``compare.csv``, ``compare.md``, ``compare.png`` and a
self-contained ``compare.html`` (figure inlined, no scripts, no network)."""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path
import numpy as np

from ..analysis.compare import ALL_MEASURES, SHORT_NAMES, SHOWN, Comparison
from ..io import atomic_write_text
from .figures import plt
from .html import _fmt


def _interval(mean: float, lo: float, hi: float, n: int) -> str:
    """``mean [lo, hi]``; when the seeds agree exactly there is no interval to print."""
    if mean is None or not math.isfinite(mean):
        return "—"
    if lo is not None and math.isfinite(lo):
        return f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]"
    return f"{_fmt(mean)}, seeds agree" if n >= 2 else f"{_fmt(mean)}, 1 seed"


def cell_text(row: dict, m: str) -> tuple[str, str]:
    """(value, difference to the best row) of measure ``m`` in one table row, as text."""
    value = _interval(row[m], row[f"{m}_ci_low"], row[f"{m}_ci_high"], row[f"{m}_n"])
    if row["best"]:
        diff = "best row" if m == row.get("_sort_by") else ""
    elif row[f"{m}_diff"] is None or not math.isfinite(row[f"{m}_diff"]):
        diff = "Δ —"
    else:
        kind = "paired" if row[f"{m}_diff_paired"] else "Welch"
        diff = f"Δ {_interval(row[f'{m}_diff'], row[f'{m}_diff_ci_low'], row[f'{m}_diff_ci_high'], row[f'{m}_diff_n'])} · {kind}"
    return value, diff


def _rows(cmp: Comparison) -> list[dict]:
    return [{**r, "_sort_by": cmp.sort_by} for r in cmp.table.to_dict("records")]


def _shown(cmp: Comparison) -> list[str]:
    return list(SHOWN) if cmp.sort_by in SHOWN else [cmp.sort_by, *SHOWN]


def _headline(cmp: Comparison) -> list[str]:
    order = "largest" if cmp.descending else "smallest"
    return [
        f"Experiment `{cmp.experiment}`; score `{cmp.metric}`; KL `{cmp.kl_metric}` with ε = {cmp.kl_epsilon:g}.",
        f"One row = {cmp.row_meaning}. Each value is the mean over seeds with its 95% t-interval; "
        f"rows are sorted by {SHORT_NAMES.get(cmp.sort_by, cmp.sort_by)}, {order} first (the alignment that "
        "survives the most opposing data on top), undefined last. "
        "Δ = row − best row with its 95% interval: paired over the seeds both rows define (the same seed draws "
        "the same opposing data in every run), Welch's unpaired interval when they share fewer than two.",
    ]


def compare_figure(cmp: Comparison):
    """The metric against opposing examples per row (mean ± 95% interval over seeds, base levels
    dashed), and one forest panel per shown measure (mean ± 95% interval; the best row bold)."""
    rows = _rows(cmp)
    measures = _shown(cmp)
    forest_h = 0.9 + 0.32 * max(3, len(rows))
    fig = plt.figure(figsize=(2.3 * len(measures) + 1.4, 3.4 + forest_h))
    grid = fig.add_gridspec(2, len(measures), height_ratios=[3.4, forest_h])
    axes = [fig.add_subplot(grid[0, :])] + [fig.add_subplot(grid[1, i]) for i in range(len(measures))]
    cmap = plt.get_cmap("viridis")
    labels = [row_label(cmp, r) for r in rows]
    colors = [cmap(0.1 + 0.75 * i / max(1, len(rows) - 1)) for i in range(len(rows))]
    ax = axes[0]
    mc = cmp.mean_curves
    for r, label, color in zip(rows, labels, colors):
        sel = mc.label == r["label"]
        for k in cmp.by:
            sel &= mc[k] == r[k]
        c = mc[sel].sort_values("n_opposing")
        if c.empty:
            continue
        ax.plot(c.n_opposing, c["mean"], marker="o", ms=3, color=color, label=label)
        ok = np.isfinite(c.ci_low.to_numpy(float))
        if ok.any():
            ax.fill_between(c.n_opposing[ok], c.ci_low[ok], c.ci_high[ok], color=color, alpha=0.15, lw=0)
        if math.isfinite(r["score_base"]):
            ax.axhline(r["score_base"], ls="--", lw=0.8, color=color)
    ax.set_xlabel("opposing examples n⁻")
    ax.set_ylabel(f"{cmp.metric} (dashed: base)")
    ax.set_title(f"{cmp.experiment}: {len(rows)} rows", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    y = np.arange(len(rows))[::-1]  # best row on top
    for ax, m in zip(axes[1:], measures):
        for yi, r, color in zip(y, rows, colors):
            mean, lo, hi = r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"]
            if not math.isfinite(mean):
                ax.text(0.5, yi, "n/a", transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=7, color="0.5")
                continue
            err = [[mean - lo], [hi - mean]] if math.isfinite(lo) else None
            ax.errorbar([mean], [yi], xerr=err, fmt="o", ms=5 if r["best"] else 3.5, capsize=2, color=color,
                        lw=2 if r["best"] else 1)
        ax.set_yticks(y, labels if ax is axes[1] else [""] * len(rows), fontsize=7)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        unit = ALL_MEASURES[m][0]
        ax.set_title(f"{SHORT_NAMES.get(m, m)}{' (sorted)' if m == cmp.sort_by else ''}", fontsize=8)
        ax.set_xlabel(unit, fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def markdown(cmp: Comparison, figure: str = "compare.png") -> str:
    """The table as Markdown (value and Δ to the best row in each cell)."""
    measures = _shown(cmp)
    head = ["rank", "row", *cmp.by, "seeds", *[f"{SHORT_NAMES.get(m, m)} ({ALL_MEASURES[m][0]})" for m in measures]]
    lines = [f"# springback compare: {cmp.experiment}", "", *_headline(cmp), ""]
    lines += [f"Note: {n}" for n in cmp.notes] + ([""] if cmp.notes else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in _rows(cmp):
        cells = [str(r["rank"]), f"**{r['label']}**" if r["best"] else str(r["label"]), *[str(r[k]) for k in cmp.by],
                 str(r["n_seeds"])]
        for m in measures:
            value, diff = cell_text(r, m)
            cells.append(f"{value}<br>{diff}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Rows → runs: " + "; ".join(f"`{lab}` = `{run}`" for run, lab in cmp.labels.items()), "",
              f"![comparison]({figure})", ""]
    return "\n".join(lines)


def page(cmp: Comparison, png: bytes) -> str:
    """The self-contained HTML page (figure inlined as base64 PNG; no scripts, no links out)."""
    e = html.escape
    measures = _shown(cmp)
    head = "".join(f"<th>{e(SHORT_NAMES.get(m, m))}<br><small>{e(ALL_MEASURES[m][0])}</small></th>" for m in measures)
    body = []
    for r in _rows(cmp):
        tds = "".join(f"<td>{e(v)}<br><small>{e(d)}</small></td>" for v, d in (cell_text(r, m) for m in measures))
        by = "".join(f"<td>{e(str(r[k]))}</td>" for k in cmp.by)
        body.append(f"<tr data-row='{e(str(r['label']))}'{' class=best' if r['best'] else ''}><td>{r['rank']}</td>"
                    f"<td><b>{e(str(r['label']))}</b><br><small><code>{e(str(r['run']))}</code></small></td>{by}"
                    f"<td>{r['n_seeds']}</td>{tds}</tr>")
    notes = "".join(f"<p class=note>Note: {e(n)}</p>" for n in cmp.notes)
    by_head = "".join(f"<th>{e(k)}</th>" for k in cmp.by)
    data = base64.b64encode(png).decode()
    intro = "".join(f"<p>{e(t).replace('`', '')}</p>" for t in _headline(cmp))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>springback compare · {e(cmp.experiment)}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;width:100%;font-size:13px}} td,th{{border:1px solid #ccc;padding:5px;vertical-align:top;text-align:left}}
th{{background:#f3f3f3}} tr.best td{{background:#eef7ee}} small{{color:#555}} .note{{background:#fff3c4;padding:4px 8px}}
img{{max-width:100%;border:1px solid #eee}}
</style></head><body>
<h1>Comparison of {len(cmp.labels)} {e(cmp.experiment)} runs</h1>
<p>Generated {e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}.</p>
{intro}{notes}
<table id="compare"><thead><tr><th>rank</th><th>row</th>{by_head}<th>seeds</th>{head}</tr></thead>
<tbody>{''.join(body)}</tbody></table>
<figure><img alt="comparison" src="data:image/png;base64,{data}"><figcaption>Left: {e(cmp.metric)} against opposing
examples, mean and 95% interval over seeds, base levels dashed. Right: each measure's mean and 95% interval per row
(best row bold).</figcaption></figure>
</body></html>
"""


def write_compare(cmp: Comparison, out: str | Path) -> dict[str, Path]:
    """Write compare.csv (every measure, interval and difference), compare.md, compare.png and
    compare.html into ``out``; returns their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = compare_figure(cmp)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    png = buf.getvalue()
    paths = {"csv": out / "compare.csv", "md": out / "compare.md", "png": out / "compare.png", "html": out / "compare.html"}
    atomic_write_text(paths["csv"], cmp.table.to_csv(index=False))
    atomic_write_text(paths["md"], markdown(cmp, paths["png"].name))
    tmp = paths["png"].with_suffix(".png.tmp")
    tmp.write_bytes(png)
    tmp.replace(paths["png"])
    atomic_write_text(paths["html"], page(cmp, png))
    return paths


def row_label(cmp: Comparison, row: dict) -> str:
    """A row's label with its ``by`` values (e.g. ``nano · n_aligned=100``)."""
    return " · ".join([str(row["label"])] + [f"{k}={row[k]}" for k in cmp.by])


def describe(cmp: Comparison) -> list[str]:
    """One plain line per row for the terminal: rank, row, the sorted measure and its Δ to the best row."""
    out = []
    for r in _rows(cmp):
        value, diff = cell_text(r, cmp.sort_by)
        out.append(f"{r['rank']:>2}  {row_label(cmp, r)[:48]:<48} {SHORT_NAMES.get(cmp.sort_by, cmp.sort_by)} {value}  {diff}")
    return out

