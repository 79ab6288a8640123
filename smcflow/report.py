"""A diagnosis as PNG plots and one self-contained HTML page (:meth:`smcflow.Diagnosis.report`).

Plots (matplotlib, Agg backend, written only when their data exist):

* ``ess.png``: ESS / N against the step for every run, resampling steps marked, the degeneracy
  threshold drawn;
* ``weights.png``: histogram of ``N * W_i`` of the final weights (1 for equal weights);
* ``genealogy.png``: distinct ancestors of the final particles against the step (runs with
  ``keep_ancestors=True``), the coalescence step marked;
* ``log_evidence.png``: log Ẑ of every run with their mean;
* ``samples.png``: a grid of samples when a ``scale`` result's samples are images.

``index.html`` embeds every plot (base64), the summary and the findings, so it can be mailed alone.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from .diagnostics import THRESHOLDS

__all__ = ["write_report"]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6.4, 3.6), dpi=100)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _ess_plot(d: Any, out: Path) -> Path:
    plt, fig, ax = _figure()
    steps = np.arange(d.ess.shape[1])
    for r in range(d.n_runs):
        line = ax.plot(steps, d.ess[r] / d.n_particles, lw=0.8, alpha=0.7)[0]
        marks = np.flatnonzero(d.resampled[r])
        ax.plot(marks, d.ess[r, marks] / d.n_particles, "|", color=line.get_color(), ms=6)
    floor = max(THRESHOLDS["ess_fraction"], THRESHOLDS["ess_floor"] / d.n_particles)
    ax.axhline(floor, color="red", ls="--", lw=0.8, label="degeneracy threshold")
    ax.set(xlabel="step", ylabel="ESS / N", ylim=(0, 1.05), title="ESS before resampling (| = resampled)")
    ax.legend(loc="lower left", fontsize=8)
    return _save(plt, fig, out / "ess.png")


def _weights_plot(d: Any, log_w: np.ndarray, out: Path) -> Path:
    plt, fig, ax = _figure()
    scaled = np.exp(log_w - np.max(log_w, axis=1, keepdims=True))
    scaled = d.n_particles * scaled / np.sum(scaled, axis=1, keepdims=True)
    ax.hist(scaled.reshape(-1), bins=50, color="tab:blue")
    ax.set(xlabel="N · W (1 = equal weights)", ylabel="particles", yscale="log",
           title=f"final weights; Pareto k̂ worst {np.nanmax(d.pareto_khat) if np.isfinite(d.pareto_khat).any() else math.nan:.2f}")
    return _save(plt, fig, out / "weights.png")


def _genealogy_plot(d: Any, out: Path) -> Path:
    plt, fig, ax = _figure()
    steps = np.arange(d.distinct_ancestors.shape[1])
    for r in range(d.n_runs):
        ax.plot(steps, d.distinct_ancestors[r], lw=0.8, alpha=0.7)
    for c in d.coalescence[d.coalescence > 0]:
        ax.axvline(c, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="step", ylabel="distinct ancestors", yscale="log",
           title="ancestors of the final particles (dotted: coalescence)")
    return _save(plt, fig, out / "genealogy.png")


def _evidence_plot(d: Any, out: Path) -> Path:
    plt, fig, ax = _figure()
    runs = np.arange(d.n_runs)
    ax.plot(runs, d.log_evidence, "o", ms=4)
    ax.axhline(np.mean(d.log_evidence), color="black", lw=0.8, label="mean")
    ax.set(xlabel="run", ylabel="log Ẑ", title=f"log Ẑ across runs (sd {d.log_evidence_sd:.3g})")
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "log_evidence.png")


def _samples_plot(images: np.ndarray, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(images)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), images):
        ax.imshow(image, cmap="gray_r")
    fig.suptitle("samples (run 0)")
    return _save(plt, fig, out / "samples.png")


def _html(d: Any, pictures: list[Path]) -> str:
    figures = "\n".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{p.name}</figcaption></figure>" for p in pictures)
    findings = "\n".join(f"<li class=\"{'warning' if f.is_warning else 'note'}\">{html.escape(str(f))}</li>"
                         for f in d.findings) or "<li>none</li>"
    verdict = "OK" if d.ok else "PROBLEMS"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>smcflow diagnosis: {html.escape(d.source)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} pre{{background:#f4f4f4;padding:1em}}
.warning{{color:#a00}} .note{{color:#555}} figure{{display:inline-block;margin:0.5em}}</style></head>
<body><h1>smcflow diagnosis: {html.escape(d.source)} — {verdict}</h1>
<h2>Findings</h2><ul>{findings}</ul>
<h2>Summary</h2><pre>{html.escape(d.summary())}</pre>
<h2>Plots</h2>{figures}
<p>Thresholds: {html.escape(str(THRESHOLDS))}</p></body></html>
"""


def write_report(d: Any, out_dir: str | Path, log_weights: np.ndarray | None = None,
                 images: np.ndarray | None = None) -> Path:
    """Write the plots and ``index.html`` of diagnosis ``d`` into ``out_dir``; return the page's path.

    ``log_weights`` ``(R, N)`` (the final weights, for the histogram) and ``images`` ``(n, H, W)`` are
    optional; :meth:`Diagnosis.report` passes what the diagnosis kept.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pictures = [_ess_plot(d, out)]
    if log_weights is not None:
        pictures.append(_weights_plot(d, np.asarray(log_weights, dtype=np.float64), out))
    if d.distinct_ancestors is not None:
        pictures.append(_genealogy_plot(d, out))
    if np.isfinite(d.log_evidence).all() and d.n_runs > 1:
        pictures.append(_evidence_plot(d, out))
    if images is not None and len(images):
        pictures.append(_samples_plot(np.asarray(images), out))
    page = out / "index.html"
    page.write_text(_html(d, pictures), encoding="utf-8")
    return page
