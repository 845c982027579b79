"""End-to-end evaluation of a model (audio in, product outputs out) on a dataset split, with the paper's metrics."""

from __future__ import annotations

import numpy as np

from m2e_plugin.labels import MOOD_TAGS, mood_set_figures

VA_DATASETS = ("deam", "emomusic", "pmemo")


def default_split(ds) -> str:
    """``test`` for a dataset with an official split, ``all`` for one without (4Q)."""
    return "test" if ds.split_names else "all"


def split_track_ids(ds, dataset: str, split: str) -> list[str]:
    """Track ids of ``split`` (train, validation, test) of the dataset's default split, or ``all``."""
    if split == "all":
        return list(ds.track_ids)
    try:
        splits = ds.get_track_splits()  # each dataset's default split (split-0 for MTG-Jamendo)
    except NotImplementedError as exc:  # no official split (4Q), or its id lists are absent (PMEmo without them)
        raise ValueError(f"{exc} (m2e evaluate: --split all scores every track)") from None
    if split not in splits:
        raise ValueError(f"{dataset}: no split {split!r}; available: {', '.join(splits)} or all")
    return list(splits[split])


def evaluate_model(model: str, dataset: str, data_home, split: str | None = None, *, limit: int | None = None,
                   device: str = "auto", progress: str = "auto", **model_options) -> dict:
    """Predict every track of the split with ``Music2emo(model)`` and score it.

    Returns a dict with ``model``, ``dataset``, ``split``, ``n_tracks``, ``failed`` (``{track: error}``),
    ``decoder_warnings`` (``{track: warning}``: the decoder's lines while reading it) and the metrics: for 4Q
    quadrant accuracy / macro-F1 and valence / arousal ROC-AUC; for DEAM, EmoMusic, PMEmo R^2 (and RMSE) per
    dimension; for MTG-Jamendo macro PR-AUC / ROC-AUC over the tags the model predicts. A metric the tracks do not
    define (an AUC over one class) is None. ``split`` None: :func:`default_split`. ``progress`` is a
    :class:`m2e_plugin.progress.Progress` mode (auto, always, never).
    """
    from m2e_plugin import loaders
    from m2e_plugin.predictor import Music2emo
    from m2e_plugin.progress import Progress, decoder_warning, native_stderr_captured
    from m2e_plugin.training.metrics import binary_roc_auc, macro_f1, mood_scores, va_scores

    ds = loaders.initialize(dataset, data_home=str(data_home))
    split = default_split(ds) if split is None else split
    ids = split_track_ids(ds, dataset, split)[:limit] if limit else split_track_ids(ds, dataset, split)
    try:
        m = Music2emo(model, device=device, **model_options)
    except Exception as exc:  # missing weights, an unknown device: nothing can be scored (ValueError: exit 2)
        raise ValueError(str(exc)) from exc
    tags = [t for t in m.backend.mood_tags if t in MOOD_TAGS]
    rows, failed, decoder = [], {}, {}
    with Progress(len(ids), "m2e evaluate", unit="track", mode=progress) as bar:
        for tid in ids:
            track = ds.track(tid)
            with native_stderr_captured() as noise:  # libmpg123's raw lines name no file: one warning per track
                try:
                    out = m.predict(track.audio_path)
                    rows.append((track, out))
                except Exception as exc:  # keep going: one bad file must not lose the evaluation
                    failed[tid] = str(exc)
            if tid not in failed and noise.lines:
                decoder[tid] = decoder_warning(track.audio_path, noise)
            bar.update(1, failed=tid in failed)
    if len(rows) < 2:
        causes = "; ".join(f"{tid}: {cause}" for tid, cause in list(failed.items())[:3])
        raise ValueError(f"{dataset}/{split}: only {len(rows)} tracks could be predicted ({len(failed)} failed"
                         + (f"; first: {causes}" if causes else "") + ")")
    result = {"model": model, "dataset": dataset, "split": split, "n_tracks": len(rows), "failed": failed,
              "decoder_warnings": decoder}
    if dataset == "fourq":
        y = np.array([int(t.quadrant[1]) - 1 for t, _ in rows])
        pred = np.array([int(o["quadrant"][1]) - 1 for _, o in rows])
        v = np.array([o["valence"] for _, o in rows])
        a = np.array([o["arousal"] for _, o in rows])
        result.update(quadrant_accuracy=float(np.mean(pred == y)), quadrant_macro_f1=macro_f1(y, pred, 4),
                      valence_roc_auc=binary_roc_auc(np.isin(y, [0, 3]), v),
                      arousal_roc_auc=binary_roc_auc(np.isin(y, [0, 1]), a))
        # how the answers behave as ratings and as moods (issue 11's yardsticks), on clips the user brings
        result["ratings"] = {name: {"p5": round(float(np.percentile(x, 5)), 3),
                                    "p95": round(float(np.percentile(x, 95)), 3),
                                    "outside_1.5_8.5": round(float(np.mean((x < 1.5) | (x > 8.5))), 4)}
                             for name, x in (("valence", v), ("arousal", a))}
        if tags:
            predicted = np.array([[t in o["predicted_moods"] for t in tags] for _, o in rows])
            result["moods"] = {"tags": len(tags), **mood_set_figures(predicted, tags, quadrants=y)}
    elif dataset in VA_DATASETS:
        truth = np.array([[t.valence, t.arousal] for t, _ in rows], dtype=float)
        pred = np.array([[o["valence"], o["arousal"]] for _, o in rows], dtype=float)
        result.update(va_scores(truth, pred))
    else:
        if not tags:
            raise ValueError(f"model {model!r} predicts no MTG-Jamendo tags")
        truth = np.array([[1 if t in {x.split('---')[-1] for x in tr.moods} else 0 for t in tags] for tr, _ in rows])
        score = np.array([[o["mood_probabilities"][t] for t in tags] for _, o in rows])
        s = mood_scores(truth, score)
        result.update(pr_auc=s["pr_auc"], roc_auc=s["roc_auc"], n_tags=s["n_tags"])
    # NaN is not JSON: an undefined metric is None (null)
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in result.items()}


def _metric(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_table(result: dict) -> str:
    """The paper's table layout (markdown) for one evaluation result."""
    head = "| Model | Dataset | Split | N |"
    row = f"| {result['model']} | {result['dataset']} | {result['split']} | {result['n_tracks']} |"
    if "quadrant_accuracy" in result:
        head += " Quadrant acc | Macro-F1 | Valence ROC-AUC | Arousal ROC-AUC |"
        row += "".join(f" {_metric(result[k])} |" for k in ("quadrant_accuracy", "quadrant_macro_f1",
                                                              "valence_roc_auc", "arousal_roc_auc"))
    elif "r2_valence" in result:
        head += " R² V | R² A | RMSE V | RMSE A |"
        row += "".join(f" {_metric(result[k])} |" for k in ("r2_valence", "r2_arousal", "rmse_valence",
                                                              "rmse_arousal"))
    else:
        head += " PR-AUC | ROC-AUC | tags |"
        row += f" {_metric(result['pr_auc'])} | {_metric(result['roc_auc'])} | {result['n_tags']} |"
    sep = "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"
    lines = [head, sep, row]
    if "ratings" in result:
        r, m = result["ratings"], result.get("moods")
        lines += ["", "| Valence p5-p95 | Arousal p5-p95 | outside [1.5, 8.5] (V / A) | moods median (none) | "
                      "antonym pairs | a mood contradicting the quadrant |", "|---|---|---|---|---|---|",
                  f"| {r['valence']['p5']:.2f}-{r['valence']['p95']:.2f} | {r['arousal']['p5']:.2f}-"
                  f"{r['arousal']['p95']:.2f} | {r['valence']['outside_1.5_8.5']:.3f} / "
                  f"{r['arousal']['outside_1.5_8.5']:.3f} | "
                  + (f"{m['median_moods']:g} ({m['share_with_no_mood']:.3f}) | {m['antonym_pair_rate']:.3f} | "
                     f"{m['share_contradicting_quadrant']:.3f} |" if m else "- | - | - |")]
    return "\n".join(lines)
