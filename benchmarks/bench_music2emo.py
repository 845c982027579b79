"""Real-time factor and peak memory of `music2emo` inference, split into decode, MERT, harmony and head.

    nice python benchmarks/bench_music2emo.py                      # CPU, 30 s / 3 min / 10 min, BTC chords
    python benchmarks/bench_music2emo.py --durations 30 --device cuda --chords offline
    nice python benchmarks/bench_music2emo.py --mert-layers --durations 30   # MERT through 7 layers vs all 12

Weights: the full-size MERT-v1-95M architecture (config of m-a-p/MERT-v1-95M), the published head layout and the
full-size BTC large-vocabulary network, all with RANDOM weights (the hub is not reachable from CI machines). Timing
does not depend on the weight values; predictions do, so they are not printed. Audio: synthetic music written as
44.1 kHz stereo 16-bit WAV (so decoding, mixing and resampling to 24 kHz are part of the measurement).

Each duration runs in a fresh subprocess so that the peak resident memory (ru_maxrss) belongs to that case alone.
Prints a markdown table; RTF = processing seconds / audio seconds (below 1 is faster than real time).
``--mert-layers`` also times MERT alone on one 30 s segment, built up to layer 7 (what the backend runs: Music2Emo
reads hidden states 6 and 7) against all 12 layers, alternating the two so machine load hits both alike, and
checks that the embeddings are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # music2emo_fixtures: the MERT-v1-95M config and checkpoint layouts


def build_weights(root: Path) -> dict[str, str]:
    """Write a full-size random MERT-v1-95M directory, a Lightning head checkpoint and a full-size BTC file."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import HubertModel

    from m2e_plugin.backbones.mert import hubert_config_from_mert
    from m2e_plugin.harmony.btc import build_btc
    from music2emo_fixtures import MERT_V1_CONFIG, make_lightning_ckpt

    torch.manual_seed(0)
    mert_dir = root / "MERT-v1-95M-random"
    mert_dir.mkdir()
    (mert_dir / "config.json").write_text(json.dumps(MERT_V1_CONFIG))
    model = HubertModel(hubert_config_from_mert(MERT_V1_CONFIG))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(mert_dir / "model.safetensors"))
    ckpt = make_lightning_ckpt(root / "J_all.ckpt")
    btc = root / "btc_model_large_voca.pt"
    torch.save({"model": build_btc().state_dict(), "mean": np.float64(-3.5), "std": np.float64(2.5)}, btc)
    return {"mert": str(mert_dir), "checkpoint": str(ckpt), "chord_model": str(btc)}


def write_audio(path: Path, seconds: float) -> None:
    """Synthetic stereo music at 44.1 kHz, written in one-minute pieces (memory stays small)."""
    import numpy as np
    import soundfile as sf

    from m2e_plugin.demo import synth_music

    sr = 44100
    with sf.SoundFile(path, "w", sr, 2, subtype="PCM_16") as f:
        done = 0.0
        while done < seconds:
            piece = synth_music(min(60.0, seconds - done), sr, seed=int(done))
            f.write(np.stack([piece, 0.9 * piece], axis=1))
            done += 60.0


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from m2e_plugin import Music2emo

    weights = json.loads(args.weights)
    t0 = time.perf_counter()
    options = {"mert": weights["mert"], "checkpoint": weights["checkpoint"], "local_files_only": True}
    if args.chords == "btc":
        options["chord_model"] = weights["chord_model"]
    else:
        options["chords"] = "offline"
    model = Music2emo(model="music2emo", device=args.device, **options)
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = model.predict(args.worker)
    total = time.perf_counter() - t0
    row = {"duration": out["duration"], "load_s": load_s, "total_s": total, **model.backend.last_timings,
           "rss_after_load_mb": rss_loaded,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "chords": model.backend.harmony.method}
    if args.device.startswith("cuda"):
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(row))


def mert_layers_worker(args) -> None:
    """Median seconds of one 30 s segment through MERT built to layer 7 vs all 12; embeddings must be identical."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.mert import MUSIC2EMO_LAYERS, load_mert, segment_embedding

    weights = json.loads(args.weights)
    full = load_mert(weights["mert"], device=args.device)
    cut = load_mert(weights["mert"], device=args.device, last_layer=max(MUSIC2EMO_LAYERS))
    x, _ = load_audio(args.mert_layers_worker, target_sr=24000)
    segment = x[: 30 * 24000]
    times: dict[str, list[float]] = {"full": [], "cut": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, model in (("full", full), ("cut", cut)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outputs[name] = segment_embedding(model, segment)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    print(json.dumps({"full_s": float(np.median(times["full"])), "cut_s": float(np.median(times["cut"])),
                      "layers_full": len(full.encoder.layers), "layers_cut": len(cut.encoder.layers),
                      "identical": bool(np.array_equal(outputs["full"], outputs["cut"])),
                      "max_abs_diff": float(np.abs(outputs["full"] - outputs["cut"]).max())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--durations", type=float, nargs="+", default=[30.0, 180.0, 600.0], help="audio seconds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--chords", choices=("btc", "offline"), default="btc")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--mert-layers", action="store_true",
                   help="also time MERT alone on 30 s: built to layer 7 (used) vs all 12 layers")
    p.add_argument("--repeats", type=int, default=3, help="--mert-layers: runs of each (median reported)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mert-layers-worker", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if args.mert_layers_worker:
        mert_layers_worker(args)
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="m2e-bench-") as tmp:
        root = Path(tmp)
        print("building random full-size weights ...", file=sys.stderr)
        weights = build_weights(root)
        rows = []
        for seconds in args.durations:
            wav = root / f"music_{int(seconds)}s.wav"
            write_audio(wav, seconds)
            print(f"running {seconds:.0f} s ...", file=sys.stderr)
            cmd = [sys.executable, __file__, "--worker", str(wav), "--weights", json.dumps(weights),
                   "--device", args.device, "--chords", args.chords, "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"worker failed for {seconds} s:\n{proc.stderr}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            wav.unlink()
        layers = None
        if args.mert_layers:
            wav = root / "music_30s.wav"
            write_audio(wav, 30.0)
            print("timing MERT layers ...", file=sys.stderr)
            cmd = [sys.executable, __file__, "--mert-layers-worker", str(wav), "--weights", json.dumps(weights),
                   "--device", args.device, "--threads", str(args.threads), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"MERT layer worker failed:\n{proc.stderr}")
            layers = json.loads(proc.stdout.strip().splitlines()[-1])
    import platform

    import torch

    dev = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
    print(f"\nmusic2emo inference, device {dev} ({args.threads} torch threads, {os.cpu_count()} CPUs), "
          f"chords: {rows[0]['chords']}, torch {torch.__version__}, {platform.python_version()}; "
          "random weights, full-size architectures\n")
    gpu = "peak_gpu_mb" in rows[0]
    head = ("| audio | decode s | MERT s | harmony s | head s | total s | RTF | × real time | model load s "
            "| RSS after load MB | peak RSS MB |" + (" peak GPU MB |" if gpu else ""))
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        d = r["duration"]
        label = f"{d / 60:.0f} min" if d >= 120 else f"{d:.0f} s"
        line = (f"| {label} | {r['decode']:.2f} | {r['mert']:.2f} | {r['harmony']:.2f} | {r['head']:.3f} | "
                f"{r['total_s']:.2f} | {r['total_s'] / d:.3f} | {d / r['total_s']:.1f} | {r['load_s']:.1f} | "
                f"{r['rss_after_load_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
        if gpu:
            line += f" {r['peak_gpu_mb']:.0f} |"
        print(line)
    if layers:
        print(f"\nMERT alone, one 30 s segment, median of {args.repeats} (alternating):\n")
        print("| MERT layers run | seconds | share of 12 layers | embeddings identical |")
        print("|---|---|---|---|")
        print(f"| 1-{layers['layers_full']} | {layers['full_s']:.2f} | 1.00 | |")
        print(f"| 1-{layers['layers_cut']} | {layers['cut_s']:.2f} | {layers['cut_s'] / layers['full_s']:.2f} | "
              f"{'yes' if layers['identical'] else 'NO (max diff %.2g)' % layers['max_abs_diff']} |")


if __name__ == "__main__":
    main()
