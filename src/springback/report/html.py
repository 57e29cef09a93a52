"""Write one report for one or more run directories.

The HTML is self-contained: figures are inlined as base64 PNG, no scripts, no network.
Verdicts are copied from each run's ``result.json``, where they were computed from data.

Layout: the verdict counts; one summary figure with every claim on a common scale
(:mod:`.summary`); the claims table (effect, 95% interval, equivalence band δ, seeds — and for
an inconclusive claim the seeds that would decide it —, verdict, links to the claim's figures,
and one sub-row per group when a claim pools groups such as worlds); then one section per
experiment with its figures (each an anchor), timings and resolved config.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import time
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_text

VERDICTS = ("reproduced", "not_reproduced", "absent", "inconclusive")
_VERDICT_STYLE = {
    "reproduced": "background:#d8f3dc",
    "not_reproduced": "background:#ffd6d6",
    "absent": "background:#dde7f6",
    "inconclusive": "background:#fff3c4",
}


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "—"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(x)


def _load(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    result["_dir"] = run_dir
    result["_config"] = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else ""
    return result


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def figure_anchor(section: str, figure: str) -> str:
    """The HTML id of one figure of one experiment section."""
    return f"fig-{_slug(section)}-{_slug(Path(figure).stem)}"


def _sections(results: list[dict]) -> list[str]:
    """A unique anchor name per result: its experiment, numbered when an experiment repeats."""
    names = [r["experiment"] for r in results]
    return [n if names.count(n) == 1 else f"{n}-{i + 1}" for i, n in enumerate(names)]


def claim_figures(claim: dict, figures: Sequence[str]) -> list[str]:
    """The figures a claim links to: those its details name (``details["figures"]``, file stems
    or paths), else every figure of its experiment."""
    named = (claim.get("details") or {}).get("figures")
    if isinstance(named, (list, tuple)) and named:
        stems = {Path(str(n)).stem for n in named}
        chosen = [f for f in figures if Path(f).stem in stems]
        if chosen:
            return chosen
    return list(figures)


def seeds_text(claim: dict) -> str:
    """Seeds used, and for an inconclusive claim the seeds that would decide it."""
    text = str(claim.get("n_seeds", "—"))
    needed = claim.get("seeds_needed")
    if claim.get("verdict") == "inconclusive" and needed is not None:
        approx = "" if str(needed).startswith(">") else "≈"  # ">1000": beyond the cap, not an estimate
        text += f" ({approx}{needed} to decide)"
    elif claim.get("verdict") == "inconclusive" and (claim.get("details") or {}).get("groups_disagree"):
        text += " (its groups disagree in sign: see them per group)"
    return text


def _summary_png(claims: list[tuple[str, dict]]) -> bytes | None:
    from .figures import plt
    from .summary import summary_figure

    fig = summary_figure(claims)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write_report(run_dirs: Sequence[str | Path], out: str | Path, wall_s: dict[str, float] | None = None,
                 title: str = "springback report") -> Path:
    """Write ``out/report.html``, ``out/report.md`` and ``out/report_summary.png``; returns the HTML path."""
    out = Path(out)
    results = [_load(Path(d)) for d in run_dirs]
    sections = _sections(results)
    wall_s = wall_s or {}
    claims = [(r["experiment"], c) for r in results for c in r["claims"]]
    owner = [(sec, r) for sec, r in zip(sections, results) for _ in r["claims"]]
    counts = {v: sum(1 for _, c in claims if c["verdict"] == v) for v in VERDICTS}
    count_text = ", ".join(f"{counts[v]} {v.replace('_', ' ')}" for v in VERDICTS)
    # Grouped by section: two runs of one experiment are two groups (rebound, rebound-2).
    png = _summary_png([(sec, c) for (_, c), (sec, _) in zip(claims, owner)])
    if png is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report_summary.png").write_bytes(png)

    # ------------------------------------------------------------------ markdown
    md = [f"# {title}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
          f"{count_text} (of {len(claims)} claims).", ""]
    if png is not None:
        md += ["![every claim on a common scale](report_summary.png)", ""]
    md += ["## Claims", "", "| claim | paper | effect | 95% CI | δ | seeds | verdict |", "|---|---|---|---|---|---|---|"]
    for _, c in claims:
        md.append(f"| `{c['id']}` | {c['paper']} | {_fmt(c['effect'])} {c.get('unit', '')} | "
                  f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] | {_fmt(c.get('delta'))} | {seeds_text(c)} | "
                  f"**{c['verdict']}** |")
        for g, v in (c.get("groups") or {}).items():
            md.append(f"| ↳ `{g}` | | {_fmt(v.get('effect'))} | [{_fmt(v.get('ci_low'))}, {_fmt(v.get('ci_high'))}] | "
                      f"{_fmt(v.get('delta'))} | {seeds_text(v)} | {v.get('verdict', '—')} |")
    for r in results:
        md += ["", f"## {r['experiment']}", ""]
        for c in r["claims"]:
            md.append(f"- `{c['id']}`: {c['statement']}")
        for f in r["figures"]:
            md.append(f"\n![{f}]({(r['_dir'] / f).relative_to(out) if (r['_dir'] / f).is_relative_to(out) else r['_dir'] / f})")
        md.append(f"\nRun directory `{r['_dir']}`; wall time {_fmt(wall_s.get(r['experiment'], r['timings'].get('run_s')))} s.")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")

    # ------------------------------------------------------------------ html
    e = html.escape
    rows = []
    for (exp, c), (sec, r) in zip(claims, owner):
        links = " ".join(f"<a href='#{e(figure_anchor(sec, f))}'>{e(Path(f).stem)}</a>"
                         for f in claim_figures(c, r["figures"]))
        rows.append(
            f"<tr id='claim-{e(c['id'])}' data-claim='{e(c['id'])}'><td><code>{e(c['id'])}</code><br><small>{e(c['statement'])}</small></td>"
            f"<td><small>{e(c['paper'])}</small></td><td>{_fmt(c['effect'])}<br><small>{e(c.get('unit', ''))}</small></td>"
            f"<td>[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]</td><td>{_fmt(c.get('delta'))}</td><td>{e(seeds_text(c))}</td>"
            f"<td style='{_VERDICT_STYLE.get(c['verdict'], '')}'><b>{e(c['verdict'])}</b></td>"
            f"<td class='links'><small>{links or '—'}</small></td></tr>"
        )
        for g, v in (c.get("groups") or {}).items():
            rows.append(
                f"<tr class='group' data-group='{e(c['id'])}[{e(str(g))}]'><td>↳ <code>{e(str(g))}</code></td><td></td>"
                f"<td>{_fmt(v.get('effect'))}</td><td>[{_fmt(v.get('ci_low'))}, {_fmt(v.get('ci_high'))}]</td>"
                f"<td>{_fmt(v.get('delta'))}</td><td>{e(seeds_text(v))}</td>"
                f"<td style='{_VERDICT_STYLE.get(v.get('verdict', ''), '')}'>{e(str(v.get('verdict', '—')))}</td><td></td></tr>"
            )
    parts = []
    for sec, r in zip(sections, results):
        figs = []
        for f in r["figures"]:
            data = base64.b64encode((r["_dir"] / f).read_bytes()).decode()
            figs.append(f"<figure id='{e(figure_anchor(sec, f))}'><img alt='{e(f)}' data-file='{e(f)}' "
                        f"src='data:image/png;base64,{data}'><figcaption>{e(Path(f).stem)}</figcaption></figure>")
        t = r.get("timings", {})
        parts.append(
            f"<section id='exp-{e(sec)}'><h2>{e(r['experiment'])}</h2>"
            f"<p>Wall time {_fmt(wall_s.get(r['experiment'], t.get('run_s')))} s "
            f"(cells run {t.get('cells_run', '—')}, reused {t.get('cells_skipped', '—')}); "
            f"run directory <code>{e(str(r['_dir']))}</code>; config hash <code>{e(r.get('config_hash', ''))}</code>.</p>"
            f"<div class='figs'>{''.join(figs)}</div>"
            f"<details><summary>resolved config</summary><pre>{e(r['_config'])}</pre></details></section>"
        )
    summary = ""
    if png is not None:
        summary = (f"<figure id='summary' class='summary'><img alt='every claim on a common scale' data-file='report_summary.png' "
                   f"src='data:image/png;base64,{base64.b64encode(png).decode()}'><figcaption>Every claim at a glance: "
                   "(effect − null) divided by its equivalence band δ (○; ±1 is the band), or, for a claim without δ, by "
                   "its 95%-interval half-width (□; the interval reaches the null when |x| ≤ 1). Positive = the paper's "
                   "side. Linear inside ±1, logarithmic beyond. Grouped by paper and experiment, coloured by verdict."
                   "</figcaption></figure>")
    first = results[0] if results else {}
    env = {"versions": first.get("versions", {}), "git": first.get("git"), "machine": first.get("machine", {})}
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;width:100%;font-size:14px}} td,th{{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}}
th{{background:#f3f3f3}} .figs{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0;max-width:48%}}
figure.summary{{max-width:100%;margin:0 0 1em 0}} tr.group td{{font-size:12px;color:#444;border-top:none}}
td.links a{{margin-right:6px;white-space:nowrap}} figure:target{{outline:3px solid #e0a526}}
figure img{{max-width:100%;border:1px solid #eee}} figcaption{{font-size:12px;color:#555}} pre{{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}}
</style></head><body>
<h1>{e(title)}</h1>
<p>Generated {e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}.
<b>{counts['reproduced']}</b> reproduced, <b>{counts['not_reproduced']}</b> not reproduced,
<b>{counts['absent']}</b> absent, <b>{counts['inconclusive']}</b> inconclusive, of {len(claims)} claims. A verdict is
<i>reproduced</i> when the whole 95% interval over seeds lies on the paper's side of the null, <i>not reproduced</i>
when it lies wholly on the other side, <i>absent</i> when it lies inside the equivalence band ±δ (the smallest effect
that would matter), and <i>inconclusive</i> otherwise — then the seeds column says about how many seeds would decide it.</p>
<h2>Claims</h2>
{summary}
<table id="claims"><thead><tr><th>claim</th><th>paper</th><th>effect</th><th>95% CI</th><th>δ</th><th>seeds</th><th>verdict</th><th>figures</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{''.join(parts)}
<h2>Environment</h2><pre>{e(json.dumps(env, indent=2))}</pre>
<p>Wall time per part (s): <code>{e(json.dumps({k: round(v, 1) for k, v in wall_s.items()}))}</code></p>
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path

