"""`m2e predict --plot OUT.png`: one figure per file that a listener can read.

Each figure has three panels:

* valence and arousal (1-9) over time, covering the whole audio: every window's value is drawn over the time
  span it stands for (from its centre half a hop either side, the first from 0 s, the last to the end), the
  track-level values as dashed lines, the neutral 5 as a grey line;
* the valence-arousal plane with the four Russell quadrants shaded and labelled, the windows' path (light to
  dark in time) and the track value as a star;
* the top moods over time: one row per tag that is among a window's top 3 (the most frequent first), a mark
  where it is, larger for rank 1; the track's top moods with their probabilities in the title.

One input gives ``OUT.png``; several give ``OUT-<name>.png`` each (readable at any count, unlike one tall image).
Names in any script render when a CJK-capable font is installed (Debian: ``fonts-noto-cjk``); otherwise
matplotlib's default font is used and missing glyphs show as boxes, without failing.
"""

from __future__ import annotations

import os
import warnings

from m2e_plugin.labels import top_moods
from m2e_plugin.progress import clock

# Fonts tried after the default, for titles in other scripts (file names, plugin tags); whichever are installed.
_FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Noto Sans CJK TC",
                   "Noto Sans Arabic", "Noto Sans Hebrew", "Noto Sans Devanagari", "Noto Sans Thai")
_QUADRANTS = (  # (name, valence range, arousal range, colour, words)
    ("Q1", (5, 9), (5, 9), "#f6c445", "happy, excited"),
    ("Q2", (1, 5), (5, 9), "#e4572e", "tense, angry"),
    ("Q3", (1, 5), (1, 5), "#4c72b0", "sad, depressed"),
    ("Q4", (5, 9), (1, 5), "#55a868", "calm, relaxed"),
)
_MOOD_ROWS = 6
_SCALE = (0.75, 9.25)  # 1-9 with a margin: values at the ends of the scale stay visible inside the frame


def plot_problem(out_path: str) -> str | None:
    """Why ``--plot out_path`` cannot work (missing matplotlib, missing folder), checked before any prediction."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install 'm2e[plot]'"
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        return f"cannot write {out_path}: folder {folder} does not exist"
    return None


def plot_paths(results: list[dict], out_path: str) -> list[str]:
    """Output file of each result: ``out_path`` for one, ``<stem>-<input name>.png`` (made unique) for several;
    ``<folder>/<input name>.png`` when ``out_path`` is a folder. A path without an extension gets ``.png`` (the
    name matplotlib writes, so the path reported is the file written)."""
    folder = os.path.isdir(out_path) or out_path.endswith(os.sep)
    stem, ext = os.path.splitext(out_path)
    ext = ".png" if folder or not ext else ext
    if len(results) == 1 and not folder:
        return [stem + ext]
    paths, seen = [], set()
    for r in results:
        given = str(r["file"])
        name = "stdin" if given == "-" else os.path.splitext(os.path.basename(given))[0].strip("<>") or "input"
        base = os.path.join(out_path, name) if folder else f"{stem}-{name}"
        candidate, n = base + ext, 2
        while candidate in seen:
            candidate, n = f"{base}-{n}{ext}", n + 1
        seen.add(candidate)
        paths.append(candidate)
    return paths


def write_plots(results: list[dict], out_path: str) -> list[str]:
    """Write one figure per result (see the module docstring); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = plot_paths(results, out_path)
    # A list of families (not the generic "sans-serif"): matplotlib then falls back glyph by glyph.
    with matplotlib.rc_context({"font.family": _font_families()}):
        for result, path in zip(results, paths):
            fig = _figure(result, plt)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # boxes, not a failure
                fig.savefig(path, dpi=100)
            plt.close(fig)
    return paths


def _font_families() -> list[str]:
    from matplotlib import font_manager, rcParams

    manager = font_manager.fontManager
    installed = {f.name for f in manager.ttflist}
    if not installed & set(_FALLBACK_FONTS):
        # matplotlib's font cache predates fonts installed later (e.g. fonts-noto-cjk): add those files now.
        for path in font_manager.findSystemFonts():
            if "Noto" in os.path.basename(path) and "Sans" in os.path.basename(path):
                try:
                    manager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # an unreadable font file is simply not used
                    continue
        installed = {f.name for f in manager.ttflist}
    return list(rcParams["font.sans-serif"][:1]) + [f for f in _FALLBACK_FONTS if f in installed]


def coverage(timeline: list[dict], duration: float) -> tuple[list[float], list[float], list[int]]:
    """Span edges for each window's value so the whole audio is covered, and the windows kept.

    A window stands for the time from its centre to half way to its neighbours' centres; the first starts at 0,
    the last ends at ``duration``. An end-aligned tail window whose centre is less than half a hop after the
    previous one (a near-duplicate of it) is left out: the previous window already covers the end.
    Returns ``(left_edges, right_edges, kept_indices)``.
    """
    centres = [(e["start"] + e["end"]) / 2 for e in timeline]
    kept = list(range(len(timeline)))
    if len(centres) >= 3:
        hop = centres[-2] - centres[-3]
        if hop > 0 and centres[-1] - centres[-2] < hop / 2:
            kept = kept[:-1]
    mids = [centres[i] for i in kept]
    end = max(duration, timeline[-1]["end"]) if timeline else duration
    edges = [0.0] + [(a + b) / 2 for a, b in zip(mids, mids[1:])] + [end]
    return edges[:-1], edges[1:], kept


def _figure(result: dict, plt):
    timeline = result.get("timeline") or []
    duration = float(result.get("duration") or (timeline[-1]["end"] if timeline else 0.0))
    fig = plt.figure(figsize=(12, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(2.6, 1), height_ratios=(1.6, 1))
    ax_time = fig.add_subplot(grid[0, 0])
    ax_plane = fig.add_subplot(grid[:, 1])
    ax_moods = fig.add_subplot(grid[1, 0], sharex=ax_time)

    left, right, kept = coverage(timeline, duration)
    points = [timeline[i] for i in kept]
    for dim, colour in (("valence", "#1f77b4"), ("arousal", "#d62728")):
        xs, ys = [], []
        for lo, hi, e in zip(left, right, points):
            xs += [lo, hi]
            ys += [e[dim], e[dim]]
        ax_time.plot(xs, ys, color=colour, lw=1.8, label=f"{dim} (windows)")
        ax_time.plot([(e["start"] + e["end"]) / 2 for e in points], [e[dim] for e in points], "o", color=colour,
                     ms=3)
        ax_time.axhline(result[dim], color=colour, lw=1.2, ls="--", label=f"{dim} (track) {result[dim]:.2f}")
    ax_time.axhline(5.0, color="grey", lw=0.8, ls=":")
    ax_time.set_ylim(*_SCALE)
    ax_time.set_yticks(range(1, 10))
    ax_time.set_xlim(0, max(duration, 1e-3))
    ax_time.set_ylabel("valence / arousal (1-9)")
    ax_time.legend(fontsize=8, ncol=2, loc="best")
    ax_time.tick_params(labelbottom=False)
    window = (timeline[0]["end"] - timeline[0]["start"]) if timeline else 0
    ax_time.set_title(f"{os.path.basename(str(result['file']))}  ({result['model']}, {clock(duration)}, "
                      f"{len(timeline)} windows of {window:g} s)", fontsize=10, loc="left")

    _plane(ax_plane, result, points)
    _moods(ax_moods, result, points, left, right)
    ax_moods.set_xlabel("time (s)")
    return fig


def _plane(ax, result: dict, points: list[dict]) -> None:
    for name, (v0, v1), (a0, a1), colour, words in _QUADRANTS:
        ax.fill_between([v0, v1], a0, a1, color=colour, alpha=0.15, lw=0)
        ax.text((v0 + v1) / 2, a1 - 0.25 if a0 >= 5 else a0 + 0.25, f"{name}\n{words}", ha="center",
                va="top" if a0 >= 5 else "bottom", fontsize=8, color="#333333")
    if points:
        import matplotlib as mpl

        v = [e["valence"] for e in points]
        a = [e["arousal"] for e in points]
        ax.plot(v, a, color="#999999", lw=0.8, zorder=2)
        shades = mpl.colormaps["Greys"]([0.35 + 0.6 * i / max(1, len(points) - 1) for i in range(len(points))])
        ax.scatter(v, a, c=shades, s=14, zorder=3, label="windows (light → dark: time)")
    ax.scatter([result["valence"]], [result["arousal"]], marker="*", s=260, color="black", edgecolor="white",
               zorder=4, label=f"track: {result['quadrant']}")
    ax.axhline(5, color="grey", lw=0.8)
    ax.axvline(5, color="grey", lw=0.8)
    ax.set_xlim(*_SCALE)
    ax.set_ylim(*_SCALE)
    ax.set_xticks(range(1, 10))
    ax.set_yticks(range(1, 10))
    ax.set_aspect("equal")
    ax.set_xlabel("valence (1-9)")
    ax.set_ylabel("arousal (1-9)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.32), fontsize=8, frameon=False)


def _moods(ax, result: dict, points: list[dict], left: list[float], right: list[float]) -> None:
    counts: dict[str, int] = {}
    for e in points:
        for tag in e.get("top_moods", []):
            counts[tag] = counts.get(tag, 0) + 1
    rows = sorted(counts, key=lambda t: (-counts[t], t))[:_MOOD_ROWS]
    for y, tag in enumerate(rows):
        for lo, hi, e in zip(left, right, points):
            tops = e.get("top_moods", [])
            if tag in tops:
                rank = tops.index(tag)
                ax.fill_between([lo, hi], y - 0.38 + 0.12 * rank, y + 0.38 - 0.12 * rank, color="#6a51a3",
                                alpha=(0.9, 0.55, 0.3)[min(rank, 2)], lw=0)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    probs = result.get("mood_probabilities", {})
    ax.set_title("top moods over time (dark: first of a window's top 3)   track: "
                 + (", ".join(f"{t} {probs[t]:.2f}" for t in top_moods(probs, 3)) or "no mood"), fontsize=9,
                 loc="left")

