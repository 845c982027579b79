"""The Music2Emo recipe (reference doc section 5): single-task AttnCK teachers, then a multitask MTAttnCK student
trained on any subset of datasets with knowledge distillation, on features from ``m2e features``.

Datasets and their task: ``mtg_jamendo_moodtheme`` -> ``moods`` (56 tags, frequency-weighted BCE with the
reference's train priors); ``deam`` / ``emomusic`` / ``pmemo`` -> ``va`` (MSE on the raw 1-9 means). The MERT input
is the mean of the track's 30 s segment embeddings; during training a random contiguous run of segments is averaged
instead (the reference's augmentation).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.labels import MOOD_TAGS, TAG_PRIORS
from m2e_plugin.training.trainer import OutputDict, Task, TaskData, Trainer, TrainConfig

MOOD_DATASETS = ("mtg_jamendo_moodtheme",)
VA_DATASETS = ("deam", "emomusic", "pmemo")
TASKS = {"moods": Task("moods", "multilabel", priors=TAG_PRIORS), "va": Task("va", "regression")}


def task_of(dataset: str) -> str:
    """``"moods"`` for the MTG-Jamendo mood/theme set, ``"va"`` for the valence/arousal sets."""
    if dataset in MOOD_DATASETS:
        return "moods"
    if dataset in VA_DATASETS:
        return "va"
    raise ValueError(f"no Music2Emo task for dataset {dataset!r}; use one of {MOOD_DATASETS + VA_DATASETS}")


@dataclass
class SplitArrays:
    """One dataset split as arrays: MERT segments (padded), segment counts, chord/key ids and targets."""

    dataset: str
    track_ids: list[str]
    segments: np.ndarray  # (N, S_max, 1536)
    n_segments: np.ndarray  # (N,)
    root: np.ndarray  # (N, 100)
    attr: np.ndarray  # (N, 100)
    mode: np.ndarray  # (N,)
    target: np.ndarray  # (N, 56) multi-hot or (N, 2) valence/arousal

    def task_data(self, *, augment: bool, teacher=None) -> TaskData:
        mean = (self.segments.sum(1) / self.n_segments[:, None]).astype(np.float32)
        inputs = {"x_mert": torch.from_numpy(mean), "chord_root": torch.from_numpy(self.root).long(),
                  "chord_attr": torch.from_numpy(self.attr).long(), "key_mode": torch.from_numpy(self.mode).long()}
        if augment:
            inputs["_segments"] = torch.from_numpy(self.segments)
            inputs["_n"] = torch.from_numpy(self.n_segments).long()
        return TaskData(self.dataset, inputs, {task_of(self.dataset): torch.from_numpy(self.target).float()},
                        teacher=teacher, augment=segment_run_mean if augment else None)


def segment_run_mean(inputs: dict, gen: torch.Generator) -> dict:
    """Replace ``x_mert`` by the mean of a random contiguous run [s, e) of each track's segments."""
    seg, n = inputs["_segments"], inputs["_n"]
    out = dict(inputs)
    rows = []
    for i in range(seg.shape[0]):
        k = int(n[i])
        s = int(torch.randint(0, k, (1,), generator=gen))
        e = int(torch.randint(s + 1, k + 1, (1,), generator=gen))
        rows.append(seg[i, s:e].mean(0))
    out["x_mert"] = torch.stack(rows)
    return out


def targets_for(dataset: str, tracks) -> np.ndarray:
    """Targets of loader tracks: multi-hot moods (56, product order) or (valence, arousal) on 1-9."""
    if task_of(dataset) == "moods":
        index = {t: i for i, t in enumerate(MOOD_TAGS)}
        y = np.zeros((len(tracks), len(MOOD_TAGS)), dtype=np.float32)
        for r, tr in enumerate(tracks):
            for tag in tr.moods:
                tag = tag.split("---")[-1]
                if tag in index:
                    y[r, index[tag]] = 1.0
        return y
    return np.array([[float(tr.valence), float(tr.arousal)] for tr in tracks], dtype=np.float32)


def split_arrays(dataset: str, track_ids: list[str], targets: np.ndarray, cache) -> SplitArrays:
    """Gather cached inputs for ``track_ids`` (tracks missing from the cache are an error naming them)."""
    from m2e_plugin.training.features import load_cache

    mert = load_cache(cache, track_ids, "mert")
    root = np.stack(load_cache(cache, track_ids, "root"))
    attr = np.stack(load_cache(cache, track_ids, "attr"))
    mode = np.stack(load_cache(cache, track_ids, "mode")).reshape(-1)
    n = np.array([m.shape[0] for m in mert])
    segs = np.zeros((len(mert), int(n.max()), mert[0].shape[-1]), dtype=np.float32)
    for i, m in enumerate(mert):
        segs[i, : len(m)] = m
    return SplitArrays(dataset, list(track_ids), segs, n, root, attr, mode, targets)


def load_splits(dataset: str, data_home, cache, *, jamendo_split: int = 0) -> dict[str, SplitArrays]:
    """train/validation/test arrays of one dataset through the project's loaders and the feature cache."""
    from m2e_plugin import loaders

    ds = loaders.initialize(dataset, data_home=str(data_home))
    splits = ds.get_track_splits(jamendo_split) if dataset in MOOD_DATASETS else ds.get_track_splits()
    out = {}
    for name in ("train", "validation", "test"):
        ids = list(splits.get(name, []))
        if ids:
            out[name] = split_arrays(dataset, ids, targets_for(dataset, [ds.track(t) for t in ids]), cache)
    return out


def build_student(input_size: int = 1536):
    """MTAttnCK wrapped to return ``{"moods", "va"}``."""
    from m2e_plugin.models.music2emo import MTAttnCK

    return OutputDict(MTAttnCK(input_size=input_size), ("moods", "va"))


def build_teacher(task: str, input_size: int = 1536):
    """Single-task AttnCK (56 mood logits or 2 VA values) wrapped to return ``{task: ...}``."""
    from m2e_plugin.models.music2emo import AttnCK

    return OutputDict(AttnCK(input_size=input_size, output_size=56 if task == "moods" else 2), (task,))


def train_recipe(data: dict[str, dict[str, SplitArrays]], config: TrainConfig, *, augment: bool = True,
                 teachers: dict | None = None, log=None) -> tuple[torch.nn.Module, dict, dict]:
    """Teachers (one per dataset, unless given) then the multitask student with KD when ``config.kd``.

    Returns ``(student, teachers, histories)``; the student is the bare MTAttnCK (``.module``). ``log``: where the
    per-model lines go (default: ``sys.stderr`` at call time).
    """
    # looked up per call: a default bound at import kept the stream of that moment, which a redirect (a notebook,
    # pytest's capture) may since have closed -> "I/O operation on closed file" after training
    log = sys.stderr if log is None else log
    input_size = next(iter(data.values()))["train"].segments.shape[-1]
    teachers = dict(teachers or {})
    histories = {}
    # said before the work, not after it: without validation tracks nothing stops training early
    for name in (n for n, s in data.items() if "validation" not in s and config.kd):
        print(f"{name}: no validation tracks: its teacher trains for --max-epochs ({config.max_epochs}), "
              "the last epoch is kept", file=log)
    if not any("validation" in s for s in data.values()):
        print(f"student: no validation tracks in any dataset: it trains for --max-epochs ({config.max_epochs}), "
              "the last epoch is kept", file=log)
    if config.kd:
        for name, splits in data.items():
            if name in teachers:
                continue
            task = task_of(name)
            torch.manual_seed(config.seed)  # initial weights are part of the seeded run
            teacher = build_teacher(task, input_size)
            val = [splits["validation"].task_data(augment=False)] if "validation" in splits else None
            hist = Trainer(teacher, {task: TASKS[task]}, config).fit([splits["train"].task_data(augment=augment)], val)
            teachers[name] = teacher
            histories[f"teacher:{name}"] = hist
            print(f"teacher {name}: best epoch {hist.best_epoch + 1}, {_val_loss(hist)}", file=log)
    torch.manual_seed(config.seed)
    student = build_student(input_size)
    train = [s["train"].task_data(augment=augment, teacher=teachers.get(n) if config.kd else None)
             for n, s in data.items()]
    val = [s["validation"].task_data(augment=False) for s in data.values() if "validation" in s] or None
    hist = Trainer(student, TASKS, config).fit(train, val)
    histories["student"] = hist
    print(f"student: best epoch {hist.best_epoch + 1}, {_val_loss(hist)} ({hist.stopped})", file=log)
    return student.module, teachers, histories


def _val_loss(hist) -> str:
    # without validation tracks (EmoMusic's copy without them) this read "val loss inf": no early stopping either
    return f"val loss {hist.best_val_loss:.4f}" if hist.val_loss else "no validation tracks (last epoch kept)"


def evaluate_head(model, split: SplitArrays) -> dict:
    """Paper metrics of a Music2Emo head on one split: mood PR/ROC-AUC or VA R^2."""
    from m2e_plugin.training.metrics import mood_scores, va_scores

    wrapped = OutputDict(model, ("moods", "va")) if not isinstance(model, OutputDict) else model
    data = split.task_data(augment=False)
    out = Trainer(wrapped, TASKS).predict(data.inputs)
    if task_of(split.dataset) == "moods":
        s = mood_scores(split.target, torch.sigmoid(out["moods"]).numpy())
        return {"pr_auc": s["pr_auc"], "roc_auc": s["roc_auc"]}
    return va_scores(split.target, out["va"].numpy())


def save_student(model, out, card: dict) -> None:
    """Safetensors weights (loadable by ``load_music2emo_head``) and a JSON model card beside them."""
    from m2e_plugin.models.music2emo import save_head

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_head(model, out, metadata={"card": json.dumps(card)})
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
