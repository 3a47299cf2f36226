#!/usr/bin/env python3
"""Usage: local/plot_results.py RUN_OPTIONS

Pictures of a run's SER results, written into its results directory (that of
``local/make_results.py``, which calls :func:`write_figures` and links them from
RESULTS.md; run alone, this program writes the same files):

* ``confusion_<system>.png``: the pooled confusion matrix of each system (counts; rows the
  reference, columns the prediction), from ``<system>/pooled.json``;
* ``wa_ua_fold<k>.png``: WA and UA of every system on fold k's test session, from
  ``<system>/fold<k>.json``.

RUN_OPTIONS are those of :mod:`espnet_asrser.recipe.layout`, which name the results
directory, the systems and the folds.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from espnet_asrser.recipe.layout import Layout, LayoutError, add_run_options  # noqa: E402


class PlotError(Exception):
    """A score file is missing or lacks a field the pictures need."""


def load_score(path: Path, *fields: str) -> dict:
    try:
        score = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise PlotError(f"{path} is missing: run the stage that scores the folds") from None
    except ValueError as e:
        raise PlotError(f"{path} is not valid JSON: {e}") from None
    missing = [f for f in fields if f not in score]
    if missing:
        raise PlotError(f"{path} has no {', '.join(missing)}")
    return score


def confusion_figure(score: dict, title: str, order: Optional[Sequence[str]] = None):
    """The confusion matrix of a ``pooled.json``, its classes in ``order`` where listed
    there, the others after them in their own order."""
    classes = score["classes"]
    order = [c for c in order or () if c in classes] + [
        c for c in classes if c not in (order or ())
    ]
    cm = score["confusion_matrix"]
    counts = [[cm[classes.index(r)][classes.index(p)] for p in order] for r in order]
    fig, ax = plt.subplots(figsize=(1.2 * len(order) + 2.4, 1.2 * len(order) + 1.6))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="utterances")
    top = max((max(row) for row in counts), default=0)
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center",
                    color="white" if n > top / 2 else "black")
    ax.set_xticks(range(len(order)), order)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


def fold_figure(scores: List[Tuple[str, dict]], title: str):
    """Bars of WA and UA (%) per system, from their ``fold<k>.json``."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(scores) + 2.0), 4.5))
    width = 0.4
    xs = range(len(scores))
    for shift, field in ((-width / 2, "wa"), (width / 2, "ua")):
        values = [100 * s[field] for _, s in scores]
        bars = ax.bar([x + shift for x in xs], values, width, label=field.upper())
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(xs), [name for name, _ in scores], rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_figures(
    results: Path,
    systems: Sequence[Tuple[str, str]],
    folds: Sequence[str],
    order: Optional[Sequence[str]] = None,
) -> List[Tuple[str, Path]]:
    """Write the pictures of ``systems`` ((result key, row name) pairs) into ``results``.

    Returns (label, path) of each file written: the confusion matrices (labelled with
    the row names), then the folds ("fold k").
    """
    written = []
    for key, name in systems:
        score = load_score(results / key / "pooled.json", "classes", "confusion_matrix", "n")
        title = f"{name}\npooled over folds {' '.join(folds)} (n = {score['n']})"
        path = save(confusion_figure(score, title, order), results / f"confusion_{key}.png")
        written.append((name, path))
    for k in folds:
        scores = [(name, load_score(results / key / f"fold{k}.json", "wa", "ua"))
                  for key, name in systems]
        path = save(fold_figure(scores, f"Fold {k}: test WA and UA"),
                    results / f"wa_ua_fold{k}.png")
        written.append((f"fold {k}", path))
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the PNG figures of a run's results.")
    add_run_options(parser)
    args = parser.parse_args(argv)
    try:
        layout = Layout(args)
    except LayoutError as e:
        parser.error(str(e))
    systems = [(system.key, system.row) for system in layout.scored]
    try:
        written = write_figures(Path(layout.results_dir), systems, layout.folds)
    except PlotError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    for _, path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
