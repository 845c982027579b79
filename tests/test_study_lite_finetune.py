"""The fine-tuning study's building blocks (benchmarks/study_lite_finetune.py): the network split at the front end is
musicnn's forward, the fine-tuned member starts as the product's member and keeps its shapes, and no test clip of a
fold is ever a training or early-stopping clip. Tiny random inputs, no shared data, one thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark

from m2e_plugin.backbones.musicnn import load_musicnn
from m2e_plugin.training import lite
from m2e_plugin.training.lite import load_config, stratified_group_folds


@pytest.fixture(scope="module")
def study():
    torch.set_num_threads(1)
    return load_benchmark("study_lite_finetune")


def test_split_network_is_musicnn(study):
    net = load_musicnn()
    x = torch.randn(3, 187, 96) * 2 + 1
    with torch.no_grad():
        pooled, pen = study.mid_back(net, study.front_end(net, x))
        ref_pooled, ref_pen = net.pooled_and_penultimate(x)
    assert study.front_end(net, x).shape == (3, study.FRONT_CHANNELS, 187)
    torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=0)
    torch.testing.assert_close(pen, ref_pen, rtol=0, atol=0)


def tiny_data(study, n_clips=48, patches=4, frames=12, seed=0):
    """A FineTuneData of random 'front-end outputs' (few frames) whose penultimate / pooled arrays are what the
    networks make of them, as the cache holds them; 12 artists, 4 clips each."""
    rng = np.random.default_rng(seed)
    msd, mtt = load_musicnn(), load_musicnn(checkpoint="MTT_musicnn")
    fronts = {"msd": [], "mtt": []}
    pen, pooled, mtt_pooled = [], [], []
    for _ in range(n_clips):
        f = {k: rng.normal(size=(patches, study.FRONT_CHANNELS, frames)).astype(np.float16) for k in fronts}
        with torch.no_grad():
            p, e = study.mid_back(msd, torch.from_numpy(f["msd"].astype(np.float32)))
            m, _ = study.mid_back(mtt, torch.from_numpy(f["mtt"].astype(np.float32)))
        for k in fronts:
            fronts[k].append(f[k])
        pen.append(e.numpy())
        pooled.append(p.numpy())
        mtt_pooled.append(m.numpy())
    ids = [f"clip{i:02d}" for i in range(n_clips)]
    y = [i % 4 for i in range(n_clips)]
    artists = [f"artist{i // 4}" for i in range(n_clips)]
    patches_ = {"msd_penultimate": pen, "mtt_pooled": mtt_pooled}
    data = study.FineTuneData(ids, y, artists, patches_, patches_)
    data.fronts, data.pooled = fronts, {"msd": pooled}
    return data


def test_finetuned_member_starts_as_the_product_member_and_keeps_shapes(study):
    data = tiny_data(study)
    member = lite.member_configs(load_config())["msd_penultimate"]
    idx = np.arange(24)
    head, _ = lite.fit_lite(member, data, idx, kind="msd_penultimate", epochs=5)
    model = study.FineTuned(load_musicnn(), head, "midback", "penultimate")
    rows = data.rows(idx[:6], ["even"], "mean", "msd_penultimate")[0]
    np.testing.assert_allclose(study.score(model, data, "msd", idx[:6]), lite.predict_logits(head, rows), atol=1e-4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hp = {**study.HPARAMS, "max_epochs": 1, "patience": 5, "lr": 1e-2}
    model, info = study.finetune(model, data, "msd", idx, np.arange(24, 32), regulariser="l2sp", seed=0, hp=hp,
                                 test_idx=np.arange(32, 40))
    assert len(info["val_nll"]) == 2 and [t.shape for t in info["test_logits"]] == [(8, 4), (8, 4)]
    model, _ = study.finetune(model, data, "msd", idx, np.arange(24, 32), regulariser="plain", seed=0,
                              hp={**hp, "patience": 0})
    out = study.score(model, data, "msd", np.arange(40, 48))
    assert out.shape == (8, 4) and np.isfinite(out).all()
    after = model.state_dict()
    for k, v in before.items():
        frozen = k.startswith("net.") and k.split(".")[1] not in ("mid_conv", "mid_bn", "pool_bn", "dense", "dense_bn")
        stats = k.endswith(("running_mean", "running_var", "num_batches_tracked")) or k.startswith("head.feature")
        if frozen or stats:
            torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)
    back = study.FineTuned(load_musicnn(), head, "back", "penultimate")
    assert study.score(back, data, "msd", np.arange(3)).shape == (3, 4)
    assert not any(p.requires_grad for n, p in back.net.named_parameters() if n.startswith("mid_"))
    mtt_head, _ = lite.fit_lite(lite.member_configs(load_config())["mtt_pooled"], data, idx, kind="mtt_pooled",
                                epochs=5)
    mtt = study.FineTuned(load_musicnn(checkpoint="MTT_musicnn"), mtt_head, "midback", "pooled")
    assert study.score(mtt, data, "mtt", np.arange(3)).shape == (3, 4)


@pytest.mark.parametrize("refit", [False, True])
def test_no_test_clip_is_ever_trained_on(study, monkeypatch, refit):
    data = tiny_data(study)
    config = {**load_config(), "folds": 4, "seed": 1}
    plan = lite.cv_splits(config, data.y, data.groups)
    tests = [t for _, _, t in plan]
    for t, ref in zip(tests, stratified_group_folds(data.y, data.groups, 4, 1)):  # the product's folds
        np.testing.assert_array_equal(t, ref)
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(data.y)))
    for fit, val, test in plan:
        assert set(fit) | set(val) | set(test) == set(range(len(data.y)))
        assert not set(fit) & set(val) and not (set(fit) | set(val)) & set(test)
        assert not set(data.groups[test]) & set(data.groups[np.concatenate([fit, val])])  # artist-grouped

    fold = [-1]
    trained: list[tuple[int, str, set]] = []  # (fold, what, clips) of every training step or early-stopping choice
    real_fit_head, real_fit_lite, real_finetune, real_inputs = lite.fit_head, lite.fit_lite, study.finetune, data.inputs

    def ids(*arrays):
        return set(np.concatenate([np.asarray(a, dtype=int) for a in arrays if a is not None]).tolist())

    def fit_head(config_, data_, train_idx, val_idx=None, **kw):  # first call of every fold
        fold[0] += 1
        return real_fit_head(config_, data_, train_idx, val_idx, **kw)

    def fit_lite(config_, data_, train_idx, val_idx=None, **kw):
        trained.append((fold[0], "fit_lite", ids(train_idx, val_idx)))
        return real_fit_lite(config_, data_, train_idx, val_idx, **kw)

    def finetune(model, data_, net, fit_idx, val_idx, **kw):
        trained.append((fold[0], "finetune", ids(fit_idx, val_idx)))
        return real_finetune(model, data_, net, fit_idx, val_idx, **kw)

    def inputs(net, part, patch_sets):
        if torch.is_grad_enabled():  # a training batch (scoring runs under no_grad)
            trained.append((fold[0], "batch", {i for i, _ in patch_sets}))
        return real_inputs(net, part, patch_sets)

    monkeypatch.setattr(lite, "fit_head", fit_head)
    monkeypatch.setattr(lite, "fit_lite", fit_lite)
    monkeypatch.setattr(study, "finetune", finetune)
    monkeypatch.setattr(data, "inputs", inputs)
    hp = {**study.HPARAMS, "max_epochs": 1, "lr": 1e-2}
    out = study.run_seed(config, data, ["msd-midback", "msd-back", "mtt-midback"], hp=hp, refit=refit,
                         progress=False)
    assert {"baseline", "msd-midback & other", "msd-back alone", "mtt-midback & other @1",
            "msd-midback & mtt-midback"} <= set(out["oof"])
    for name, o in out["oof"].items():
        assert o.shape == (len(data.y), 4) and np.isfinite(o).all() and (np.abs(o).sum(1) > 0).all(), name
    assert fold[0] == 3 and {f for f, _, _ in trained} == {0, 1, 2, 3}
    assert sum(what == "batch" for _, what, _ in trained) > 0
    for f, what, clips in trained:
        assert not clips & set(tests[f].tolist()), (what, f)
        if what == "batch" and not refit:  # fine-tuning batches: fit clips only, never the early-stopping clips
            assert clips <= set(plan[f][0].tolist())
