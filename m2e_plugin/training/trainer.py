"""A small, deterministic multitask trainer with knowledge distillation (the Music2Emo recipe, reference doc section 5).

Plain PyTorch rather than Lightning: the recipe needs one batch from every dataset per step, per-dataset teachers and
per-task losses, which is a page of code here and a custom loop plus a CombinedLoader in Lightning; plain PyTorch
also keeps the runtime dependency list short and the run bit-for-bit reproducible on CPU from one seed.

Vocabulary
----------
* A **task** is one model output with its loss: ``multiclass`` (cross-entropy over logits), ``multilabel``
  (frequency-weighted BCE: ``pos_weight = 1/p``, ``weight = 2/(1 + 1/p)`` as the reference), or ``regression``
  (MSE on raw targets).
* A :class:`TaskData` is one dataset: its input tensors (passed to ``model(**inputs)``), its targets per task and,
  optionally, a teacher module. The model returns a dict ``{task: tensor}``.
* Each step draws one batch from every dataset that still has one ("max_size" mode: an exhausted dataset is skipped
  until the epoch ends) and sums the datasets' losses. With KD, a dataset's loss per task is
  ``kd_weight * KL(softmax(teacher/T) || softmax(student/T)) + (1 - kd_weight) * task_loss``, the KL taken
  ``batchmean`` over the task's output vector, as the reference does (including over the 2 VA outputs).
* Early stopping on the summed validation task losses (patience, min_delta); the best weights are restored.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TASK_KINDS = ("multiclass", "multilabel", "regression")


@dataclass
class Task:
    """One output of the model and its loss.

    Parameters
    ----------
    name : str
        Key of the output in the model's dict and of the targets in :class:`TaskData`.
    kind : {"multiclass", "multilabel", "regression"}
    priors : sequence of float, optional
        ``multilabel`` only: positive rate of each label (the reference's ``probas_train``) for the frequency
        weighting. ``None`` gives plain BCE.
    weight : float
        Multiplier of this task's loss.
    """

    name: str
    kind: str
    priors: tuple[float, ...] | None = None
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task's own loss, mean over the batch."""
        if self.kind == "multiclass":
            return F.cross_entropy(output, target.long())
        if self.kind == "regression":
            return F.mse_loss(output, target.to(output.dtype))
        target = target.to(output.dtype)
        if self.priors is None:
            return F.binary_cross_entropy_with_logits(output, target)
        p = torch.as_tensor(self.priors, dtype=output.dtype, device=output.device).clamp(1e-6, 1 - 1e-6)
        pos_weight = 1.0 / p
        weight = 2.0 / (1.0 + pos_weight)
        return F.binary_cross_entropy_with_logits(output, target, weight=weight, pos_weight=pos_weight)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Reference KD term: ``KLDiv(batchmean)(log_softmax(student/T), softmax(teacher/T))`` (no T^2 factor)."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student / t, dim=-1), F.softmax(teacher.detach() / t, dim=-1),
                    reduction="batchmean")


@dataclass
class TaskData:
    """One dataset: ``inputs`` (name -> tensor, first dim N) fed as ``model(**inputs)``, ``targets`` per task."""

    name: str
    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    teacher: nn.Module | None = None
    # Optional per-sample training-time augmentation: (inputs batch, generator) -> inputs batch.
    augment: Callable | None = None

    def __post_init__(self):
        sizes = {k: int(v.shape[0]) for k, v in {**self.inputs, **self.targets}.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"dataset {self.name!r}: inputs/targets disagree on the number of samples: {sizes}")

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return ({k: v[idx] for k, v in self.inputs.items()}, {k: v[idx] for k, v in self.targets.items()})


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are the reference's (Adam 1e-4, batch 8, patience 10, KD 0.8 at T=1)."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 8
    max_epochs: int = 500
    patience: int = 10
    min_delta: float = 1e-4
    kd: bool = False
    kd_weight: float = 0.8
    kd_temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"
    verbose: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, ask torch for deterministic kernels; return a generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@dataclass
class History:
    """Per-epoch training and validation losses, the best epoch and why training stopped."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped: str = ""


class Trainer:
    """Fit ``model`` (``model(**inputs) -> {task: tensor}``) on one or more :class:`TaskData`.

    Parameters
    ----------
    model : nn.Module
    tasks : dict name -> :class:`Task`
    config : :class:`TrainConfig`
    """

    def __init__(self, model: nn.Module, tasks: dict[str, Task], config: TrainConfig | None = None):
        self.model = model
        self.tasks = tasks
        self.config = config or TrainConfig()

    def _dataset_loss(self, data: TaskData, inputs, targets, *, use_kd: bool) -> torch.Tensor:
        # Keys starting with "_" are side data for ``augment`` (e.g. per-segment embeddings), not model inputs.
        inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
        out = self.model(**inputs)
        teacher_out = None
        if use_kd and data.teacher is not None:
            with torch.no_grad():
                teacher_out = data.teacher(**inputs)
        total = torch.zeros((), device=self.config.device)
        for name, target in targets.items():
            task = self.tasks[name]
            loss = task.loss(out[name], target)
            if teacher_out is not None and name in teacher_out:
                w = self.config.kd_weight
                loss = w * kd_loss(out[name], teacher_out[name], self.config.kd_temperature) + (1 - w) * loss
            total = total + task.weight * loss
        return total

    def evaluate_loss(self, datasets: list[TaskData]) -> float:
        """Summed plain task losses (no KD) over ``datasets``, each averaged over its samples."""
        self.model.eval()
        total = 0.0
        with torch.no_grad():
            for data in datasets:
                n = len(data)
                acc = 0.0
                for start in range(0, n, 512):
                    idx = torch.arange(start, min(n, start + 512))
                    inputs, targets = self._to_device(*data.batch(idx))
                    acc += float(self._dataset_loss(data, inputs, targets, use_kd=False)) * idx.numel()
                total += acc / max(n, 1)
        return total

    def _to_device(self, inputs, targets):
        d = self.config.device
        return ({k: v.to(d) for k, v in inputs.items()}, {k: v.to(d) for k, v in targets.items()})

    def fit(self, train: list[TaskData], val: list[TaskData] | None = None) -> History:
        """Train until ``max_epochs`` or early stopping; returns the :class:`History` (best weights restored)."""
        cfg = self.config
        if not train:
            raise ValueError("no training data")
        gen = seed_everything(cfg.seed)
        self.model.to(cfg.device)
        for data in train:
            if data.teacher is not None:
                data.teacher.to(cfg.device).eval()
        optim = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        hist = History()
        best_state = None
        bad_epochs = 0
        for epoch in range(cfg.max_epochs):
            self.model.train()
            orders = [torch.randperm(len(d), generator=gen) for d in train]
            steps = max(math.ceil(len(d) / cfg.batch_size) for d in train)
            running, count = 0.0, 0
            for step in range(steps):
                loss = torch.zeros((), device=cfg.device)
                present = False
                for data, order in zip(train, orders):
                    idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                    if idx.numel() == 0:
                        continue  # this dataset is exhausted for the epoch ("max_size" mode)
                    inputs, targets = data.batch(idx)
                    if data.augment is not None:
                        inputs = data.augment(inputs, gen)
                    inputs, targets = self._to_device(inputs, targets)
                    loss = loss + self._dataset_loss(data, inputs, targets, use_kd=cfg.kd)
                    present = True
                if not present:
                    continue
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                running += float(loss.detach())
                count += 1
            hist.train_loss.append(running / max(count, 1))
            if val:
                v = self.evaluate_loss(val)
                hist.val_loss.append(v)
                if v < hist.best_val_loss - cfg.min_delta:
                    hist.best_val_loss, hist.best_epoch = v, epoch
                    best_state = copy.deepcopy(self.model.state_dict())
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                if cfg.verbose:
                    print(f"epoch {epoch}: train {hist.train_loss[-1]:.4f} val {v:.4f}", file=sys.stderr)
                if bad_epochs >= cfg.patience:
                    hist.stopped = f"early stopping: no val_loss improvement > {cfg.min_delta} in {cfg.patience} epochs"
                    break
            elif cfg.verbose:
                print(f"epoch {epoch}: train {hist.train_loss[-1]:.4f}", file=sys.stderr)
        else:
            hist.stopped = f"max_epochs ({cfg.max_epochs}) reached"
        if best_state is not None:
            self.model.load_state_dict(best_state)
        if not val:
            hist.best_epoch = len(hist.train_loss) - 1
        self.model.eval()
        return hist

    @torch.no_grad()
    def predict(self, inputs: dict[str, torch.Tensor], batch_size: int = 512) -> dict[str, torch.Tensor]:
        """Raw model outputs (logits / values) for ``inputs``, in eval mode, concatenated over batches."""
        self.model.eval()
        n = int(next(iter(inputs.values())).shape[0])
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, n, batch_size):
            batch = {k: v[start : start + batch_size].to(self.config.device) for k, v in inputs.items()
                     if not k.startswith("_")}
            for k, v in self.model(**batch).items():
                parts.setdefault(k, []).append(v.cpu())
        return {k: torch.cat(v) for k, v in parts.items()}


class OutputDict(nn.Module):
    """Adapt a module returning a tensor or a tuple to the trainer's ``{task: tensor}`` convention.

    ``OutputDict(AttnCK(...), ("moods",))`` wraps a single-task teacher, ``OutputDict(MTAttnCK(...), ("moods",
    "va"))`` the multitask student. Inputs are passed through unchanged.
    """

    def __init__(self, module: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.module = module
        self.names = tuple(names)

    def forward(self, **inputs) -> dict[str, torch.Tensor]:
        out = self.module(**inputs)
        if isinstance(out, torch.Tensor):
            out = (out,)
        if len(out) != len(self.names):
            raise ValueError(f"module returned {len(out)} outputs, expected {len(self.names)} ({self.names})")
        return dict(zip(self.names, out))
