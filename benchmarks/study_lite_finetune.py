"""Does fine-tuning musicnn's mid-end and back-end lift `lite`'s CV? A study on the 600 shared 4Q clips (issue 11).

    python benchmarks/study_lite_finetune.py extract --data-home ../shared/data/4q-dev
        # 11 min of one thread on the shared 2-core machine (1.1 s per clip), 2.4 GB of cache
    python benchmarks/study_lite_finetune.py cv --data-home ../shared/data/4q-dev --variants msd-midback msd-back
        # 21 min; with --refit 17 min
    python benchmarks/study_lite_finetune.py cv --data-home ../shared/data/4q-dev \
        --variants msd-midback-plain mtt-midback                                            # 33 min
    python benchmarks/study_lite_finetune.py cv --data-home ../shared/data/4q-dev \
        --variants msd-midback mtt-midback --refit                                          # 35 min
    python benchmarks/study_lite_finetune.py cv --data-home ../shared/data/4q-dev \
        --variants msd-midback msd-back --lr 5e-4 --max-epochs 6 --refit                    # 10 min

(cv timings: one thread, two cv runs at a time and another engineer's jobs, load average 2-3.)

Result (README, lite section): fine-tuning does not lift lite. lite 2.1 reproduced in the same run gives 0.748 /
0.742 / 0.748 (mean 0.746); with a fine-tuned member in the ensemble the means are 0.740-0.747 (MSD mid-end and
back-end 0.745, back-end only 0.746, MTT mid-end 0.747, both networks, refit, 0.740), no variant +0.01 on the mean, let
alone on every seed. The inner split mostly keeps the pretrained weights; at lr 5e-4 one or two epochs of the MSD
mid-end lose 0.04-0.05.

``extract`` stores, per clip, ``<out>/<clip>.npz`` (default out ``~/.cache/m2e/features/lite-finetune/fourq``, outside
the repository; resumable through the feature cache's :func:`~m2e_plugin.training.features.build_cache`, ``--limit
20`` times a few clips): the product's level normalisation and patching
(:func:`~m2e_plugin.backbones.musicnn.level_normalised_patches`: every non-overlapping 3 s patch of the
level-normalised 16 kHz clip) and, per patch, the output of the MSD and of the MTT musicnn's front end after the max
over frequency (``front`` / ``mtt_front``, (P, 561, 187) float16: the front end is most of the cost, so it runs
once), and from the float32 front end the arrays the lite cache holds (MSD ``penultimate`` (P, 200), MTT
``mtt_pooled`` (P, 1506): bit-identical to :func:`~m2e_plugin.backbones.musicnn.embed_audio`'s) plus MSD
``msd_pooled`` (P, 1506, what the back-end reads).

``cv`` runs, per fold seed (``--seeds``, default 0 1 2), the product's folds and inner split
(:func:`m2e_plugin.training.lite.cv_splits`, the splits of :func:`~m2e_plugin.training.lite.cross_validate`, with
the committed config's ``seed`` set) and in each fold:

* the baseline, lite 2.1's head (:func:`~m2e_plugin.training.lite.fit_head`: two linear members, 200 fixed epochs
  on the even and odd views of all training clips), scored on the test clips' ``even`` view: lite 2.1's CV
  reproduced in the same run;
* per ``--variants`` name (:data:`VARIANTS`): the member's head (the product's linear member recipe) trained on the
  fit clips only, then the network part and the head fine-tuned together (:class:`FineTuned`: BatchNorm statistics
  frozen; Adam, lr 1e-4; per epoch each fit clip is one row of 4 random patches whose embeddings are averaged, as
  the product averages a clip's patch embeddings; batches of 16 clips), at most 4 epochs, early stopping with
  patience 2 on the even-view NLL of the inner validation clips (epoch 0, the unchanged start, may win). ``l2sp``
  adds 0.01 times the squared distance to the pretrained (and initial head) weights to the loss; ``plain`` is Adam's
  coupled weight decay 1e-3 toward zero. ``--refit`` scores instead the baseline's member (trained on fit and
  validation clips) fine-tuned on all training clips for the chosen number of epochs, as the product's trainer
  refits; without it the early-stopped model of the fit clips is scored. The test clips' even patches are embedded
  by the fine-tuned network and averaged, then the head: ``<variant> alone``, and ``<variant> & other`` its
  log-probabilities averaged with the other, unchanged baseline member's (lite 2.1's ensemble); ``<msd variant> &
  <mtt variant>`` both fine-tuned. ``@<n>`` rows: the fit clips' model after exactly n epochs (0 = no fine-tuning,
  the head trained on 85 % of the training clips); those rows are read off the test folds and are optimistic if
  picked. The default hyper-parameters (:data:`HPARAMS`, flags ``--lr``, ``--l2sp``, ``--weight-decay``,
  ``--row-patches``, ``--max-epochs``, ``--patience``) were set before any result; lr 5e-4 with 6 epochs was
  tried after the first four runs (a fifth configuration).

Every row is scored as :func:`~m2e_plugin.training.lite.cross_validate` scores the even view: the quadrant
temperature fitted on the pooled out-of-fold outputs, accuracy from the valence and arousal halves, valence /
arousal ROC-AUC. ``--json`` keeps every row's metrics per seed and the chosen epochs.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("MKL_NUM_THREADS", "1")
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from m2e_plugin.training.lite import FourQFeatures  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling study's table row
from study_lite_features import table_row  # noqa: E402
from paths import cache_dir  # benchmarks/paths.py

DEFAULT_OUT = cache_dir("features", "lite-finetune", "fourq")
FINETUNE_VERSION = "lite-finetune-1-musicnn-msd-mtt-front"
FRONT_CHANNELS = 561  # the front end's five branches after the max over frequency (204 + 204 + 3 x 51)


# --- the network split at the front end's max over frequency ---------------------------------------------------

def front_end(net, x: torch.Tensor) -> torch.Tensor:
    """(B, 561, T) output of musicnn's front end (input BN, timbral and temporal convs, each ReLU -> BN -> max over
    frequency) for (B, T, 96) log-mel patches: the first half of ``MusiCNN.pooled``, the same operations."""
    from m2e_plugin.backbones.musicnn import _TEMPORAL

    z = net.input_bn(x.unsqueeze(1))
    padded = F.pad(z, (0, 0, 3, 3))
    front = [net._freq_max(conv(padded), bn) for conv, bn in zip(net.timbral, net.front_bn[:2])]
    for (conv, bn), (_, before, after) in zip(zip(net.temporal, net.front_bn[2:]), _TEMPORAL):
        front.append(net._freq_max(conv(F.pad(z, (0, 0, before, after))), bn))
    return torch.cat(front, 1)


def mid_back(net, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled (B, 1506), penultimate (B, 200)) from the front end's output: the rest of
    ``MusiCNN.pooled_and_penultimate`` (mid-end convs with residuals, max and mean over time, BN, dense, ReLU, BN)."""
    h1 = net.mid_bn[0](F.relu(net.mid_conv[0](F.pad(h0, (3, 3)))))
    h2 = net.mid_bn[1](F.relu(net.mid_conv[1](F.pad(h1, (3, 3))))) + h1
    h3 = net.mid_bn[2](F.relu(net.mid_conv[2](F.pad(h2, (3, 3))))) + h2
    h = torch.cat([h0, h1, h2, h3], 1)
    pooled = torch.stack([h.amax(-1), h.mean(-1)], -1).flatten(1)
    return pooled, net.dense_bn(F.relu(net.dense(net.pool_bn(pooled))))


def fourq_tracks(data_home) -> list[tuple[str, str]]:
    from m2e_plugin import loaders

    ds = loaders.initialize("fourq", data_home=str(data_home))
    return [(t, ds.track(t).audio_path) for t in sorted(ds.track_ids)]


def extract_arrays(net, mtt, audio: np.ndarray) -> dict[str, np.ndarray]:
    """The cache entry of one clip (mono 16 kHz audio): the product's level normalisation and patching
    (:func:`~m2e_plugin.backbones.musicnn.level_normalised_patches`, every non-overlapping 3 s patch), then per patch
    the MSD and MTT front-end outputs (float16) and, from the float32 front end, MSD ``penultimate`` (as the lite
    cache), MSD ``msd_pooled`` and MTT ``mtt_pooled`` (as the lite cache)."""
    from m2e_plugin.backbones.musicnn import level_normalised_patches

    cut, level = level_normalised_patches(audio)
    out: dict[str, list] = {"front": [], "mtt_front": [], "penultimate": [], "msd_pooled": [], "mtt_pooled": []}
    with torch.inference_mode():
        for start in range(0, cut.shape[0], 16):  # embed_patches' batches
            chunk = cut[start: start + 16]
            h0 = front_end(net, chunk)
            pooled, pen = mid_back(net, h0)
            m0 = front_end(mtt, chunk)
            out["front"].append(h0.half())
            out["mtt_front"].append(m0.half())
            out["penultimate"].append(pen)
            out["msd_pooled"].append(pooled)
            out["mtt_pooled"].append(mid_back(mtt, m0)[0])
    arrays = {k: torch.cat(v).numpy() for k, v in out.items()}
    arrays["level_dbfs"] = np.asarray(level.dbfs, dtype=np.float64)
    return arrays


def cmd_extract(args) -> None:
    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.convert_musicnn import sha256_of
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, default_weights, load_musicnn
    from m2e_plugin.training.features import build_cache

    torch.set_num_threads(1)
    net, mtt = load_musicnn(), load_musicnn(checkpoint="MTT_musicnn")

    def extract(path: str) -> dict[str, np.ndarray]:
        audio, _ = load_audio(path, target_sr=SAMPLE_RATE)
        return extract_arrays(net, mtt, audio)

    description = {"version": FINETUNE_VERSION, "sample_rate": SAMPLE_RATE, "front_dtype": "float16",
                   "musicnn_sha256": sha256_of(default_weights()),
                   "musicnn_mtt_sha256": sha256_of(default_weights("MTT_musicnn"))}
    start = time.perf_counter()
    manifest = build_cache(fourq_tracks(args.data_home), args.out, extract, description, progress=args.progress,
                           limit=args.limit)
    print(f"{len(manifest['done'])} clips cached, {len(manifest['failed'])} failed, "
          f"{time.perf_counter() - start:.1f} s this run", file=sys.stderr)


# --- fine-tuning -------------------------------------------------------------------------------------------------

# variant name -> (network, trained part, regulariser); every variant: Adam, lr 1e-4, batches of 16 clips, each a row
# of 4 random patches per epoch, at most 4 epochs, early stopping (patience 2) on the inner split's even-view NLL.
VARIANTS = {
    "msd-midback": ("msd", "midback", "l2sp"),  # mid-end + back-end + head, weight decay toward the pretrained weights
    "msd-midback-plain": ("msd", "midback", "plain"),  # the same, plain (coupled) weight decay toward zero
    "msd-back": ("msd", "back", "l2sp"),  # back-end only: pool BN, dense 200, its BN, + head
    "mtt-midback": ("mtt", "midback", "l2sp"),  # the MTT network's mid-end, head on its pooled 1506 (as lite reads it)
}
HPARAMS = {"lr": 1e-4, "l2sp": 0.01, "weight_decay": 1e-3, "batch_clips": 16, "row_patches": 4, "max_epochs": 4,
           "patience": 2}
MEMBER_OF = {"msd": "msd_penultimate", "mtt": "mtt_pooled"}  # the lite member each network feeds


class FineTuned(nn.Module):
    """musicnn after its front end plus a lite member's head: (N, 561, T) front-end outputs (or, for ``part="back"``,
    (N, 1506) pooled vectors) of the patches of several clips -> per clip the mean over its patches of the
    embedding (``output``: the 200-d ``penultimate`` for MSD, the 1506-d ``pooled`` vector for MTT, what the lite
    members read) -> the head (a :class:`~m2e_plugin.models.lite.LiteModel`: standardisation, linear) -> (clips, 4)
    logits. That is the product's scoring: patch embeddings averaged, then the member's linear layer.

    Only ``part`` (and the head) trains: ``midback`` = the mid-end convs and their BNs and, for ``penultimate``, the
    back-end (pool BN, dense 200, its BN); ``back`` = the back-end only. BatchNorm statistics stay frozen (eval
    mode); the front end is not in the model's path (its outputs are cached)."""

    def __init__(self, net, head, part: str = "midback", output: str = "penultimate"):
        super().__init__()
        if part not in ("midback", "back") or output not in ("penultimate", "pooled"):
            raise ValueError(f"part {part!r} / output {output!r}")
        if part == "back" and output == "pooled":
            raise ValueError("nothing of the network to fine-tune for the pooled output with part='back'")
        self.net, self.head = copy.deepcopy(net), copy.deepcopy(head)
        self.part, self.output = part, output
        names = ["pool_bn", "dense", "dense_bn"] if output == "penultimate" else []  # pooled: read before pool_bn
        if part == "midback":
            names += ["mid_conv", "mid_bn"]
        for name, p in self.net.named_parameters():
            p.requires_grad_(name.split(".")[0] in names)
        self.net.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # frozen BN statistics
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if x.dim() == 3:
            pooled, pen = mid_back(net, x)
        else:
            pooled = x
            pen = net.dense_bn(F.relu(net.dense(net.pool_bn(x)))) if self.output == "penultimate" else None
        return pen if self.output == "penultimate" else pooled

    def forward(self, x: torch.Tensor, counts) -> torch.Tensor:
        emb = self.embed(x)
        means = torch.stack([e.mean(0) for e in torch.split(emb, list(counts))])
        return self.head(means)["quadrant"]


class FineTuneData(FourQFeatures):
    """The product's :class:`FourQFeatures` (``patches``: MSD ``penultimate`` and MTT ``mtt_pooled`` per patch, as
    the lite cache; no codec view) plus each clip's cached front-end outputs (``fronts[net]``: (P, 561, T) float16)
    and MSD pooled vectors (``pooled["msd"]``: (P, 1506))."""

    fronts: dict[str, list] = {}
    pooled: dict[str, list] = {}

    @classmethod
    def load_cache(cls, data_home, out, nets=("msd",)) -> "FineTuneData":
        from m2e_plugin import loaders
        from m2e_plugin.training.features import load_cache
        from m2e_plugin.training.lite import QUADRANT_NAMES

        ds = loaders.initialize("fourq", data_home=str(data_home))
        ids = sorted(ds.track_ids)
        tracks = [ds.track(t) for t in ids]
        patches = {"msd_penultimate": load_cache(out, ids, "penultimate"),
                   "mtt_pooled": load_cache(out, ids, "mtt_pooled")}
        data = cls(ids, [QUADRANT_NAMES.index(t.quadrant) for t in tracks], [t.artist for t in tracks], patches,
                   patches)
        data.fronts = {n: load_cache(out, ids, "front" if n == "msd" else "mtt_front") for n in nets}
        data.pooled = {"msd": load_cache(out, ids, "msd_pooled")}
        return data

    def inputs(self, net: str, part: str, patch_sets) -> tuple[torch.Tensor, list[int]]:
        """(stacked network input, patches per clip) of ``[(clip, patch indices), ...]``."""
        source = self.pooled[net] if part == "back" else self.fronts[net]
        xs = [np.asarray(source[i][j]) for i, j in patch_sets]
        return torch.from_numpy(np.concatenate(xs).astype(np.float32)), [len(x) for x in xs]


def even_sets(data: FourQFeatures, idx) -> list[tuple[int, np.ndarray]]:
    """The ``even`` view (patches 0, 2, 4, ...: what the product computes on a 30 s block) of each clip."""
    return [(int(i), np.arange(len(data.patches["msd_penultimate"][int(i)]))[0::2]) for i in idx]


def score(model: FineTuned, data: FineTuneData, net: str, idx, batch_clips: int = 32) -> np.ndarray:
    """(len(idx), 4) logits of the clips' even views."""
    model.eval()
    sets = even_sets(data, idx)
    out = []
    with torch.no_grad():
        for s in range(0, len(sets), batch_clips):
            x, counts = data.inputs(net, model.part, sets[s: s + batch_clips])
            out.append(model(x, counts))
    return torch.cat(out).numpy().astype(np.float64)


def nll(logits: np.ndarray, y: np.ndarray) -> float:
    return float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(np.asarray(y, dtype=np.int64))))


def finetune(model: FineTuned, data: FineTuneData, net: str, fit_idx, val_idx, *, regulariser: str, seed: int,
             hp: dict = HPARAMS, test_idx=None) -> tuple[FineTuned, dict]:
    """Fine-tune ``model`` on the clips ``fit_idx`` (per epoch, each clip one row of ``row_patches`` random
    patches); early stopping on the even-view NLL of ``val_idx`` (epoch 0 = the initial model counts: fine-tuning
    may be rejected), or with ``val_idx`` None exactly ``max_epochs`` epochs. Returns the best (last) model and
    {"best_epoch", "val_nll" per epoch, "test_logits" per epoch (only recorded, for the fixed-epoch rows, when
    ``test_idx`` is given; never used for any choice)}."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params]
    decay = hp["weight_decay"] if regulariser == "plain" else 0.0
    optim = torch.optim.Adam(params, lr=hp["lr"], weight_decay=decay)
    y_all = torch.from_numpy(data.y)
    def val_nll():
        return nll(score(model, data, net, val_idx), data.y[val_idx]) if val_idx is not None else 0.0

    info = {"val_nll": [val_nll()], "test_logits": []}
    if test_idx is not None:
        info["test_logits"].append(score(model, data, net, test_idx))
    best, best_state, bad = 0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, hp["max_epochs"] + 1):
        model.train()
        order = np.asarray(fit_idx)[torch.randperm(len(fit_idx), generator=gen).numpy()]
        for s in range(0, len(order), hp["batch_clips"]):
            clips = order[s: s + hp["batch_clips"]]
            sets = []
            for i in clips:
                n = len(data.patches["msd_penultimate"][int(i)])
                sets.append((int(i), np.sort(rng.choice(n, size=min(n, hp["row_patches"]), replace=False))))
            x, counts = data.inputs(net, model.part, sets)
            loss = F.cross_entropy(model(x, counts), y_all[torch.from_numpy(clips.astype(np.int64))])
            if regulariser == "l2sp":
                loss = loss + hp["l2sp"] * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        info["val_nll"].append(val_nll())
        if test_idx is not None:
            info["test_logits"].append(score(model, data, net, test_idx))
        if val_idx is None or info["val_nll"][-1] < info["val_nll"][best] - 1e-4:
            best, best_state, bad = epoch, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= hp["patience"]:
                break
    model.load_state_dict(best_state)
    info["best_epoch"] = best
    return model, info


def log_softmax(logits: np.ndarray) -> np.ndarray:
    return torch.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), -1).numpy()


def run_seed(config: dict, data: FineTuneData, variants, *, hp: dict = HPARAMS, refit: bool = False,
             progress: bool = True) -> dict:
    """One fold seed: {row name: pooled out-of-fold even-view outputs (600, 4)} for the baseline (lite 2.1's head,
    the product's :func:`~m2e_plugin.training.lite.fit_head`), its members alone, and per fine-tuning variant: the
    fine-tuned member alone, its ensemble with the other, unchanged member (log-probabilities averaged as lite 2.1),
    and the fixed-epoch counterparts (``@<n>``: n epochs, no early stopping). ``refit``: the model scored is the
    product's member trained on all training clips (fit + validation), fine-tuned on them for the early-stopped
    epoch count (the product's way: members train on every clip for the epochs the inner split chose; 0 = that
    member unchanged); the ``@<n>`` rows stay those of the fit clips' model."""
    from m2e_plugin.backbones.musicnn import load_musicnn
    from m2e_plugin.training.lite import cv_splits, fit_head, fit_lite, member_configs, predict_logits

    members = member_configs(config)
    kinds = list(members)
    nets = {"msd": load_musicnn(), "mtt": load_musicnn(checkpoint="MTT_musicnn")}
    n = len(data.y)
    oof: dict[str, np.ndarray] = {}
    extra: dict[str, list] = {"best_epochs": {v: [] for v in variants}}

    filled: dict[str, np.ndarray] = {}

    def put(name, idx, values):
        oof.setdefault(name, np.zeros((n, 4)))[idx] = values
        filled.setdefault(name, np.zeros(n, dtype=bool))[idx] = True

    for k, (fit_idx, val_idx, test_idx) in enumerate(cv_splits(config, data.y, data.groups)):
        start = time.perf_counter()
        base, _ = fit_head(config, data, fit_idx, val_idx)  # fixed-epoch members: trained on fit + val
        rows = data.head_rows(test_idx, ["even"], config["pooling"], kinds)[0]
        put("baseline", test_idx, predict_logits(base, rows))
        member_logp = {kind: log_softmax(predict_logits(base.members[kind], rows[kind])) for kind in kinds}
        for kind in kinds:
            put(f"baseline {kind} alone", test_idx, member_logp[kind])
        fold_ft = {}
        for v in variants:
            net, part, regulariser = VARIANTS[v]
            kind = MEMBER_OF[net]
            # the head starts as the product's member trained on the fit clips only (the inner validation clips
            # must stay unseen for early stopping), then the network and head are fine-tuned together
            head, _ = fit_lite(members[kind], data, fit_idx, kind=kind, epochs=int(members[kind]["fixed_epochs"]))
            model = FineTuned(nets[net], head, part, "penultimate" if net == "msd" else "pooled")
            model, info = finetune(model, data, net, fit_idx, val_idx, regulariser=regulariser,
                                   seed=1000 * int(config["seed"]) + k, hp=hp, test_idx=test_idx)
            extra["best_epochs"][v].append(info["best_epoch"])
            if refit:
                model = FineTuned(nets[net], base.members[kind], part, model.output)
                if info["best_epoch"]:
                    model, _ = finetune(model, data, net, np.union1d(fit_idx, val_idx), None,
                                        regulariser=regulariser, seed=1000 * int(config["seed"]) + k,
                                        hp={**hp, "max_epochs": info["best_epoch"]})
            other = [member_logp[o] for o in kinds if o != kind]
            ft = log_softmax(score(model, data, net, test_idx))
            put(f"{v} alone", test_idx, ft)
            put(f"{v} & other", test_idx, np.mean([ft] + other, 0))
            fold_ft[v] = ft
            for e, logits in enumerate(info["test_logits"]):
                put(f"{v} & other @{e}", test_idx, np.mean([log_softmax(logits)] + other, 0))
        for a in variants:  # both networks fine-tuned: an MSD variant's member & an MTT variant's member
            for b in variants:
                if VARIANTS[a][0] == "msd" and VARIANTS[b][0] == "mtt":
                    put(f"{a} & {b}", test_idx, np.mean([fold_ft[a], fold_ft[b]], 0))
        if progress:
            acc = np.mean(oof["baseline"][test_idx].argmax(1) == data.y[test_idx])
            ft = {v: round(float(np.mean(oof[f"{v} & other"][test_idx].argmax(1) == data.y[test_idx])), 3)
                  for v in variants}
            print(f"seed {config['seed']} fold {k + 1}: baseline {acc:.3f}, fine-tuned {ft}, best epochs "
                  f"{ {v: extra['best_epochs'][v][-1] for v in variants} } ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    # fixed-epoch rows of folds whose early stopping ended before that epoch are incomplete: left out
    return {"oof": {k: v for k, v in oof.items() if filled[k].all()}, **extra}


def metrics_of(logits: np.ndarray, y: np.ndarray) -> dict:
    """As :func:`~m2e_plugin.training.lite.cross_validate` reports the even view: temperature fitted on the pooled
    out-of-fold outputs, accuracy from the valence and arousal halves, valence / arousal ROC-AUC."""
    from m2e_plugin.models.lite import quadrant_softmax
    from m2e_plugin.training.lite import fit_temperature, quadrant_metrics

    t = fit_temperature(logits, y)["quadrant_temperature"]
    return quadrant_metrics(y, quadrant_softmax(logits, t))


def cmd_cv(args) -> None:
    import json

    from m2e_plugin.training.lite import load_config

    torch.set_num_threads(1)
    config = load_config(args.config)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown --variants {unknown}; one of {sorted(VARIANTS)}")
    nets = sorted({VARIANTS[v][0] for v in args.variants})
    data = FineTuneData.load_cache(args.data_home, args.out, nets=nets)
    hp = {**HPARAMS, **{k: getattr(args, k) for k in HPARAMS if getattr(args, k, None) is not None}}
    results = {}
    for seed in args.seeds:
        start = time.perf_counter()
        res = run_seed({**config, "seed": seed}, data, args.variants, hp=hp, refit=args.refit)
        results[seed] = {"metrics": {name: metrics_of(o, data.y) for name, o in res["oof"].items()},
                         "best_epochs": res["best_epochs"], "seconds": round(time.perf_counter() - start)}
        print(f"seed {seed}: {results[seed]['seconds']} s, best epochs {res['best_epochs']}", file=sys.stderr,
              flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"hparams": hp, "variants": args.variants, "refit": args.refit,
                                                   "results": results}, indent=1))
    names = [n for n in results[args.seeds[0]]["metrics"] if all(n in results[s]["metrics"] for s in args.seeds)]
    print("\n| row | accuracy, seeds " + " / ".join(map(str, args.seeds))
          + " | mean | valence AUC | arousal AUC |\n|---|---|---|---|---|")
    for name in names:
        print(table_row(name, [results[s]["metrics"][name] for s in args.seeds]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("extract", "cv"):
        s = sub.add_parser(name, help=f"{name} (see the module docstring)")
        s.add_argument("--data-home", required=True, help="the 4Q dataset (../shared/data/4q-dev)")
        s.add_argument("--out", default=str(DEFAULT_OUT), help="front-end cache (one .npz per clip)")
        if name == "extract":
            s.add_argument("--limit", type=int, default=None, help="only the first N clips (timing)")
            s.add_argument("--progress", default="auto", help="auto, always or never")
        else:
            s.add_argument("--config", default=None, help="lite training config (default: the committed one)")
            s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fold seeds")
            s.add_argument("--variants", nargs="+", default=["msd-midback", "msd-back"],
                           help=f"fine-tuning variants, of {', '.join(VARIANTS)}")
            for key in ("lr", "l2sp", "weight_decay", "row_patches", "max_epochs", "patience"):
                s.add_argument(f"--{key.replace('_', '-')}", type=type(HPARAMS[key]), default=None,
                               help=f"default {HPARAMS[key]}")
            s.add_argument("--refit", action="store_true",
                           help="score the member trained on all training clips, fine-tuned the chosen epochs")
            s.add_argument("--json", default=None, help="write every row's metrics per seed here")
    args = p.parse_args(argv)
    {"extract": cmd_extract, "cv": cmd_cv}[args.cmd](args)


if __name__ == "__main__":
    main()
