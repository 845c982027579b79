"""musicnn's MSD-trained **vgg** network (Pons & Serra 2019, ``musicnn`` 0.1.0 wheel) in PyTorch, for the lite study.

Not shipped: `benchmarks/study_lite_features.py` uses it to ask whether the vgg adds to lite 2's musicnn features.
Architecture as the wheel's ``models.vgg`` builds it (128 filters): input BatchNorm; five 3x3 convs ('same'), each
ReLU -> BatchNorm -> max-pooling ('valid'): (4x1, stride 2x2), (2x2, 2x2) x 3, (4x4, 4x4); on a (187, 96) patch the
maps are 92x48, 46x24, 23x12, 11x6 and 2x1 (pool5 reads only the first 8 x 4 cells of conv5's 11 x 6 map);
pool5 flattened in TF's (time, freq, channel) order = the 256-d **embedding**; dense 50 = MSD tag logits. Same front
end as musicnn (``m2e_plugin.backbones.musicnn.log_mel`` / ``patches``). Weights are read straight from the wheel's
TF1 checkpoint (``m2e_plugin.backbones.tf_checkpoint``, no TensorFlow).

    python benchmarks/musicnn_vgg.py mels --data-home ../shared/data/4q-dev -o /tmp/vgg_mels.npz   # 8 clips
    /tmp/tfenv/bin/python benchmarks/musicnn_vgg_reference.py WHEEL /tmp/vgg_mels.npz /tmp/vgg_ref.npz  # optional
    python benchmarks/musicnn_vgg.py check --wheel WHEEL --mels /tmp/vgg_mels.npz [--reference /tmp/vgg_ref.npz]

``check`` prints the parity with the TF graph (when a reference is given), the agreement of the vgg's MSD tags with
the MSD musicnn's on the same clips, and the forward time of a 30 s clip's 5 / 10 patches on one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

BN_EPS = 1e-3  # TF's batch_normalization default
FILTERS = 128
# (pool size, stride) after each conv, as models.vgg (TF max_pooling2d, 'valid')
POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
EMBEDDING_DIM = 256


class MusicnnVGG(nn.Module):
    """(B, 187, 96) log-mel patches -> dict of ``logits`` (B, 50), ``embedding`` (B, 256: flattened pool5) and
    ``pooled`` (B, 512: max and mean over time and frequency of the BatchNorm'd conv4 and conv5 maps)."""

    def __init__(self, n_tags: int = 50):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.convs = nn.ModuleList([nn.Conv2d(1 if i == 0 else FILTERS, FILTERS, 3, padding=1) for i in range(5)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(FILTERS, eps=BN_EPS) for _ in range(5)])
        self.out = nn.Linear(EMBEDDING_DIM, n_tags)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.input_bn(x.unsqueeze(1))  # (B, 1, T, F)
        maps = []
        for conv, bn, (size, stride) in zip(self.convs, self.bns, POOLS):
            h = bn(F.relu(conv(h)))
            maps.append(h)
            h = F.max_pool2d(h, size, stride)
        embedding = h.permute(0, 2, 3, 1).flatten(1)  # TF flattens NHWC: (time, freq, channel)
        pooled = torch.cat([torch.cat([m.amax((2, 3)), m.mean((2, 3))], 1) for m in maps[3:]], 1)
        return {"logits": self.out(embedding), "embedding": embedding, "pooled": pooled}


def tf_variable_names() -> dict[str, tuple[str, str]]:
    """torch parameter -> (TF variable, layout): convs are named 1CNN..5CNN, batch_normalization is the input BN,
    _1.._5 follow the convs, dense is the tag layer."""
    names: dict[str, tuple[str, str]] = {}
    bns = [("input_bn", "batch_normalization")] + [(f"bns.{i}", f"batch_normalization_{i + 1}") for i in range(5)]
    for ours, tf in bns:
        for a, b in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                     ("running_var", "moving_variance")):
            names[f"{ours}.{a}"] = (f"{tf}/{b}", "vector")
    for i in range(5):
        names[f"convs.{i}.weight"] = (f"{i + 1}CNN/kernel", "conv2d")
        names[f"convs.{i}.bias"] = (f"{i + 1}CNN/bias", "vector")
    names["out.weight"] = ("dense/kernel", "dense")
    names["out.bias"] = ("dense/bias", "vector")
    return names


def load_vgg(wheel, checkpoint: str = "MSD_vgg") -> MusicnnVGG:
    """The vgg of ``checkpoint`` in the musicnn wheel, in eval mode (strict: every variable, every shape)."""
    from m2e_plugin.backbones.convert_musicnn import load_checked, wheel_state

    mapping = tf_variable_names()
    state = wheel_state(Path(wheel), checkpoint, mapping)
    model = MusicnnVGG(n_tags=state["out.weight"].shape[0])
    load_checked(model, state, mapping, wheel)
    return model.eval()


@torch.inference_mode()
def run_vgg(model: MusicnnVGG, mel_patches: torch.Tensor, batch: int = 16) -> dict[str, np.ndarray]:
    outs = [model(mel_patches[s: s + batch]) for s in range(0, mel_patches.shape[0], batch)]
    return {k: torch.cat([o[k] for o in outs]).numpy() for k in outs[0]}


def clip_patches(path) -> torch.Tensor:
    """Level-normalised 3 s log-mel patches of one audio file, exactly as the study's musicnn features."""
    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, level_normalised_patches

    return level_normalised_patches(load_audio(path, target_sr=SAMPLE_RATE)[0])[0]


def write_mels(data_home: Path, n: int, out: Path) -> None:
    files = sorted(Path(data_home).glob("Q[1-4]/*.mp3"))
    chosen = files[:: max(1, len(files) // n)][:n]  # spread over the four quadrant folders
    cuts = [clip_patches(f) for f in chosen]
    np.savez(out, mel=torch.cat(cuts).numpy(), clip=np.repeat(np.arange(len(cuts)), [len(c) for c in cuts]),
             names=np.array([f.stem for f in chosen]))
    print(f"wrote {out}: {sum(len(c) for c in cuts)} patches of {len(cuts)} clips")


def check(wheel: Path, mels_path: Path, reference: Path | None) -> None:
    from m2e_plugin.backbones.musicnn import MSD_TAGS, embed_patches, load_musicnn

    torch.set_num_threads(1)
    stored = np.load(mels_path)
    mel, clip, names = torch.from_numpy(stored["mel"]), stored["clip"], stored["names"]
    vgg = load_vgg(wheel)
    out = run_vgg(vgg, mel)
    tags_vgg = 1 / (1 + np.exp(-out["logits"]))
    if reference is not None:
        ref = np.load(reference)
        for key, ours in (("taggram", tags_vgg), ("embedding", out["embedding"])):
            print(f"parity with TF ({key}): max abs diff {np.abs(ref[key] - ours).max():.2e} "
                  f"(reference range {ref[key].min():.3f}..{ref[key].max():.3f})")
    tags_msd, _, _ = embed_patches(load_musicnn(), mel)
    overlaps, rhos, top1 = [], [], []
    for c, name in enumerate(names):
        a, b = tags_vgg[clip == c].mean(0), tags_msd[clip == c].mean(0)
        top_a, top_b = np.argsort(-a)[:5], np.argsort(-b)[:5]
        overlaps.append(len(set(top_a) & set(top_b)))
        top1.append(top_a[0] == top_b[0])
        rhos.append(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])
        print(f"{name}: vgg {', '.join(f'{MSD_TAGS[i]} {a[i]:.2f}' for i in top_a)}\n"
              f"{'':{len(name)}}  msd {', '.join(f'{MSD_TAGS[i]} {b[i]:.2f}' for i in top_b)}")
    print(f"top-1 agree {np.mean(top1):.2f}; "
          f"mean top-5 overlap {np.mean(overlaps):.1f} / 5; mean Spearman rho over 50 tags {np.mean(rhos):.2f}")
    for n in (5, 10):  # lite reads every other patch of a 30 s block (5); the study reads all 10
        some = mel[:n] if len(mel) >= n else mel.repeat(-(-n // len(mel)), 1, 1)[:n]
        run_vgg(vgg, some)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            run_vgg(vgg, some)
            times.append(time.perf_counter() - t0)
        print(f"vgg forward, {n} patches of a 30 s clip, one thread: median {1000 * np.median(times):.0f} ms "
              f"(min {1000 * min(times):.0f}); load average {os.getloadavg()[0]:.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mels", help="store the log-mel patches of a few real clips (outside the repository)")
    m.add_argument("--data-home", type=Path, required=True, help="the 4Q clips (Q1..Q4/*.mp3)")
    m.add_argument("--n", type=int, default=8, help="number of clips (default 8)")
    m.add_argument("-o", "--output", type=Path, required=True, help="output .npz")
    c = sub.add_parser("check", help="parity / tag agreement / speed of the port")
    c.add_argument("--wheel", type=Path, required=True, help="musicnn-0.1.0-py3-none-any.whl")
    c.add_argument("--mels", type=Path, required=True, help="the .npz written by `mels`")
    c.add_argument("--reference", type=Path, default=None, help="TF outputs from musicnn_vgg_reference.py")
    args = p.parse_args(argv)
    if args.cmd == "mels":
        write_mels(args.data_home, args.n, args.output)
    else:
        check(args.wheel, args.mels, args.reference)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
