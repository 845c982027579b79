"""Convert the MTG-Jamendo baseline mood/theme CNN to the package's safetensors + card, and calibrate its moods.

    python -m m2e_plugin.backbones.convert_moodtheme ../shared/data/mtg-jamendo/scripts/baseline/models/best_model.pth \
        --tag-list ../shared/data/mtg-jamendo/scripts/baseline/tag_list.npy --calibrate-on ../shared/data/4q-dev

writes ``m2e_plugin/models/weights/moodtheme.safetensors`` and ``moodtheme.json`` (source sha256, provenance,
licences, tag order, calibration). The checkpoint is read with ``torch.load(weights_only=True)``, the tag list with
``allow_pickle=False``. Calibration (see :mod:`m2e_plugin.backbones.moodtheme_calibration`) needs the 4Q clips.
Deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.backbones.moodtheme import CARD_NAME, WEIGHTS_DIR, WEIGHTS_NAME, MoodThemeCNN
from m2e_plugin.labels import MOOD_TAGS

SOURCE = {
    "repository": "https://github.com/MTG/mtg-jamendo-dataset",
    "commit": "1b4fa8c",
    "path": "scripts/baseline/models/best_model.pth",
    "tag_list": "scripts/baseline/tag_list.npy (entries 127: are the 56 mood/theme tags)",
    "architecture": "scripts/baseline/model.py (CNN: 5 conv layers, 56 sigmoid outputs); re-implemented in "
    "m2e_plugin/backbones/moodtheme.py",
    "front_end": "essentia melspectrograms (12 kHz, 512/256, 96 Slaney mel, dB); re-implemented in numpy",
    "licence": "repository code and model: Apache-2.0; the MTG-Jamendo tags it was trained on: CC BY-NC-SA 4.0 "
    "(audio: Creative Commons licences of each Jamendo track)",
    "reference": "Bogdanov et al., The MTG-Jamendo dataset for automatic music tagging, ICML 2019 ML4MD workshop",
    "published_quality": "ROC-AUC 0.673, PR-AUC 0.081 (macro over 56 tags, MTG-Jamendo split-0 test; "
    "results/ml4md2019/auc_mood.tsv)",
}
TAG_PREFIX = "mood/theme---"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_tags(tag_list: Path) -> list[str]:
    names = np.load(tag_list, allow_pickle=False)[127:]
    tags = [str(n).removeprefix(TAG_PREFIX) for n in names]
    if tuple(tags) != MOOD_TAGS:
        raise ValueError(f"{tag_list}: entries 127: are not m2e_plugin.labels.MOOD_TAGS: {tags}")
    return tags


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The original state dict, checked against the architecture (strict names and shapes)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    MoodThemeCNN().load_state_dict(state, strict=True)  # raises naming any missing/unexpected/mis-shaped tensor
    return {k: v.contiguous() for k, v in state.items()}


def convert(checkpoint: Path, tag_list: Path, out_dir: Path = WEIGHTS_DIR, calibrate_on: Path | None = None,
            rate_scale: float | None = None) -> dict:
    from m2e_plugin.safetensors_io import write_safetensors

    tags = read_tags(tag_list)
    state = load_checkpoint(checkpoint)
    write_safetensors(out_dir / WEIGHTS_NAME, state, {"source_sha256": sha256(checkpoint)})
    card = {
        "name": "moodtheme",
        "what": "MTG-Jamendo baseline mood/theme CNN: 56 mood/theme tags (= Music2Emo's) from a 96-band mel "
        "spectrogram at 12 kHz",
        "source": {**SOURCE, "sha256": sha256(checkpoint), "tag_list_sha256": sha256(tag_list)},
        "weights_sha256": sha256(out_dir / WEIGHTS_NAME),
        "tags": tags,
        "calibration": None,
    }
    if calibrate_on is not None:
        from m2e_plugin.backbones.moodtheme_calibration import RATE_SCALE, calibrate

        network = MoodThemeCNN()
        network.load_state_dict(state)
        card["calibration"] = calibrate(network, calibrate_on, RATE_SCALE if rate_scale is None else rate_scale)
    (out_dir / CARD_NAME).write_text(json.dumps(card, indent=1) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="best_model.pth of MTG/mtg-jamendo-dataset scripts/baseline/models")
    parser.add_argument("--tag-list", type=Path, required=True, help="scripts/baseline/tag_list.npy of the same repository")
    parser.add_argument("--calibrate-on", type=Path, default=None,
                        help="folder of the 4Q clips (Q1..Q4/*.mp3) to fit thresholds and short-input offsets on")
    parser.add_argument("--rate-scale", type=float, default=None,
                        help="each tag is predicted at this multiple of its MTG-Jamendo rate (default: "
                        "moodtheme_calibration.RATE_SCALE, 2)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR, help="where to write the safetensors and card")
    args = parser.parse_args(argv)
    for path in (args.checkpoint, args.tag_list):
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    if args.rate_scale is not None and not 0 < args.rate_scale <= 10:
        print(f"error: --rate-scale {args.rate_scale}: expected a value in (0, 10]", file=sys.stderr)
        return 2
    card = convert(args.checkpoint, args.tag_list, args.out_dir, args.calibrate_on, args.rate_scale)
    print(f"wrote {args.out_dir / WEIGHTS_NAME} and {args.out_dir / CARD_NAME} (source sha256 {card['source']['sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
