"""Trainer: the multitask student with knowledge distillation converges on synthetic data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m2e_plugin.training.music2emo import SplitArrays, evaluate_head, train_recipe
from m2e_plugin.training.trainer import Task, TaskData, Trainer, TrainConfig, kd_loss

D = 24  # small MERT-like embedding: the synthetic answer lives in it


def _synthetic(dataset: str, n: int, seed: int, w_mood: np.ndarray, w_va: np.ndarray) -> SplitArrays:
    rng = np.random.default_rng(seed)
    segs = rng.normal(size=(n, 3, D)).astype(np.float32)
    x = segs.mean(1)
    if dataset == "mtg_jamendo_moodtheme":
        target = (x @ w_mood > 0.5).astype(np.float32)  # 56 tags, each a half-space of the embedding
    else:
        target = (5.0 + 1.5 * np.tanh(x @ w_va)).astype(np.float32)  # VA on 1-9
    root = rng.integers(0, 13, (n, 100))
    attr = rng.integers(0, 14, (n, 100))
    return SplitArrays(dataset, [str(i) for i in range(n)], segs, np.full(n, 3), root, attr,
                       rng.integers(0, 2, n), target)


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(42)
    # Each tag depends on one embedding coordinate (plus a little of the others): a known, learnable answer.
    w_mood = np.eye(D)[:, np.arange(56) % D] * np.sqrt(3) + 0.1 * rng.normal(size=(D, 56))
    w_va = rng.normal(size=(D, 2)) / np.sqrt(D / 3)
    data = {}
    for k, name in enumerate(("mtg_jamendo_moodtheme", "deam")):
        # Small on purpose: the chord transformer makes each step cost ~0.1 s on one CPU core.
        data[name] = {"train": _synthetic(name, 192, 10 * k, w_mood, w_va),
                      "validation": _synthetic(name, 64, 10 * k + 1, w_mood, w_va),
                      "test": _synthetic(name, 128, 10 * k + 2, w_mood, w_va)}
    return data


def test_multitask_student_with_kd_converges(synthetic):
    torch.set_num_threads(1)
    cfg = TrainConfig(lr=3e-3, batch_size=16, max_epochs=6, patience=5, kd=True, kd_weight=0.8,
                      kd_temperature=1.0, seed=0)
    student, teachers, hist = train_recipe(synthetic, cfg, augment=False)
    assert set(teachers) == {"mtg_jamendo_moodtheme", "deam"}
    h = hist["student"]
    assert h.val_loss[h.best_epoch] < 0.5 * h.val_loss[0]  # learned, not just initialised
    moods = evaluate_head(student, synthetic["mtg_jamendo_moodtheme"]["test"])
    va = evaluate_head(student, synthetic["deam"]["test"])
    # Chance is ROC-AUC 0.5 / R^2 0; the KD term (a softmax over the 56 tags, as the reference) slows the mood
    # head down, so six short epochs reach ~0.8 rather than 1.
    assert moods["roc_auc"] > 0.72, moods
    assert va["r2_valence"] > 0.5 and va["r2_arousal"] > 0.5, va


def test_training_is_deterministic(synthetic):
    torch.set_num_threads(1)
    d = synthetic["deam"]["train"]
    sub = SplitArrays("deam", d.track_ids[:64], d.segments[:64], d.n_segments[:64], d.root[:64], d.attr[:64],
                      d.mode[:64], d.target[:64])
    small = {"deam": {"train": sub}}
    cfg = TrainConfig(lr=1e-3, batch_size=32, max_epochs=2, patience=5, kd=False, seed=7)
    a, _, _ = train_recipe(small, cfg, augment=True)
    b, _, _ = train_recipe(small, cfg, augment=True)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        return {"q": self.lin(x)}


def test_kd_pulls_student_to_teacher():
    """With kd_weight=1 the labels are ignored: the student learns the teacher's (different) answer."""
    torch.manual_seed(0)
    x = torch.randn(400, 8)
    teacher = _Toy()
    teacher.lin.weight.data *= 5
    useless_labels = torch.zeros(400, dtype=torch.long)  # a constant class: no information
    student = _Toy()
    data = TaskData("toy", {"x": x}, {"q": useless_labels}, teacher=teacher)
    cfg = TrainConfig(lr=5e-2, batch_size=64, max_epochs=40, kd=True, kd_weight=1.0, seed=0)
    Trainer(student, {"q": Task("q", "multiclass")}, cfg).fit([data])
    with torch.no_grad():
        agree = (student(x)["q"].argmax(1) == teacher(x)["q"].argmax(1)).float().mean()
        assert agree > 0.9
        assert kd_loss(student(x)["q"], teacher(x)["q"]) < 0.1
    # and without KD the same labels pull the student to the constant class instead
    plain = _Toy()
    Trainer(plain, {"q": Task("q", "multiclass")}, TrainConfig(lr=5e-2, batch_size=64, max_epochs=40)).fit([data])
    with torch.no_grad():
        assert (plain(x)["q"].argmax(1) == 0).float().mean() > 0.95


def test_task_validation_and_frequency_weighted_bce():
    with pytest.raises(ValueError, match="kind"):
        Task("x", "ranking")
    t = Task("m", "multilabel", priors=(0.1, 0.5))
    logits = torch.zeros(4, 2)
    target = torch.tensor([[1.0, 1.0], [0, 0], [0, 1], [1, 0]])
    # pos_weight 1/p, weight 2/(1+1/p) as the reference
    pw = torch.tensor([10.0, 2.0])
    w = 2 / (1 + pw)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=w, pos_weight=pw)
    assert torch.isclose(t.loss(logits, target), expected)
    with pytest.raises(ValueError, match="disagree"):
        TaskData("bad", {"x": torch.zeros(3, 2)}, {"y": torch.zeros(4)})


def test_recipe_lines_go_to_the_stderr_of_the_call(synthetic, monkeypatch):
    """``log=sys.stderr`` was bound at import: after a redirect (a notebook, pytest's capture) closed that stream,
    `m2e train` trained and then failed with "I/O operation on closed file" (exit 2, no weights written)."""
    import io
    import sys

    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    sub = {"deam": {"train": synthetic["deam"]["train"]}}
    train_recipe(sub, TrainConfig(batch_size=64, max_epochs=1, kd=False, seed=0), augment=False)
    assert now.getvalue().startswith("student: no validation tracks in any dataset: it trains for --max-epochs (1)")
    assert "\nstudent: best epoch 1" in now.getvalue()
    assert "no validation tracks (last epoch kept)" in now.getvalue()  # it read "val loss inf"
