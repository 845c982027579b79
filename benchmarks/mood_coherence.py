"""Do lite's moods agree with its quadrant and with the truth? On the 600 shared 4Q clips, out of fold.

    python benchmarks/mood_coherence.py --data-home ../shared/data/4q-dev    # ~2 min (+1 min once for the moods)

The mood CNN and the quadrant head read the audio separately, so a clip the head calls sad and calm can be tagged
happy and energetic. :func:`m2e_plugin.models.lite.cohere_moods` fades a mood whose side of the valence or arousal
axis (``labels.MOOD_SIDES``) is the less probable one. This script measures what that does, against the clips'
true quadrants: the quadrant probabilities are the product's cross-validation (``training.lite.out_of_fold``: lite's
config, its artist-grouped folds, the temperature fitted on the pooled out-of-fold logits), so no clip is scored by
a head that saw it; the moods are the shipped tagger's on the whole clip (a 4Q clip is one 30 s block), cached in
``$M2E_CACHE/features/lite-moods/fourq/<digest>`` (the digest of the tagger, its calibration and the level
module). A mood *contradicts* a clip when it sits on the other side of an axis than the clip's true quadrant (e.g. "happy" on a Q2/Q3 clip, "calm" on a Q1/Q2 clip); side-less tags (film, epic,
...) never do. Rows: the tagger alone, then ``cohere_moods`` with the side probability at which a mood keeps its
full weight (the product: 0.5), then other values to show the choice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def mood_cache() -> Path:
    """Where the clips' moods are cached: under ``$M2E_CACHE``, in a folder named after what the moods depend on
    (the tagger's weights and card, with its calibration, and the level module), so that a new tagger or
    calibration never reuses the old moods (the table of lite 2.2 was first printed from lite 2.1's)."""
    import hashlib

    from m2e_plugin.backbones import level, moodtheme
    from m2e_plugin.cache import cache_root

    digest = hashlib.sha256()
    for path in (moodtheme.WEIGHTS_DIR / moodtheme.WEIGHTS_NAME, moodtheme.WEIGHTS_DIR / moodtheme.CARD_NAME,
                 Path(level.__file__), Path(moodtheme.__file__)):
        digest.update(path.read_bytes())
    return cache_root() / "features" / "lite-moods" / "fourq" / digest.hexdigest()[:16]


def clip_moods(data_home: Path, track_ids: list[str], cache: Path | None = None) -> np.ndarray:
    """(clips, 56) calibrated tagger probabilities of each whole clip (cached per clip)."""
    from m2e_plugin import loaders
    from m2e_plugin.audio import load_audio, to_mono
    from m2e_plugin.backbones.moodtheme import MoodTagger
    from m2e_plugin.progress import native_stderr_captured

    cache = cache or mood_cache()
    cache.mkdir(parents=True, exist_ok=True)
    dataset = loaders.initialize("fourq", data_home=str(data_home))
    tagger = None
    rows = []
    for i, track_id in enumerate(track_ids):
        path = cache / f"{track_id}.npy"
        if not path.exists():
            tagger = tagger or MoodTagger.load()
            with native_stderr_captured():  # one 4Q MP3 makes libmpg123 talk; the moods are what matters here
                y, sr = load_audio(dataset.track(track_id).audio_path)
            np.save(path, tagger.predict_moods(to_mono(y), sr))
            if (i + 1) % 100 == 0:
                print(f"moods: {i + 1}/{len(track_ids)}", file=sys.stderr)
        rows.append(np.load(path))
    return np.stack(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-home", type=Path, required=True, help="the 4Q folder (../shared/data/4q-dev)")
    ap.add_argument("--full-weight-at", type=float, nargs="+", default=[0.5, 0.3, 0.4, 0.6],
                    help="cohere_moods variants; the first is the product's")
    args = ap.parse_args()

    import torch

    from m2e_plugin.labels import mood_set_figures
    from m2e_plugin.models.lite import cohere_moods, quadrant_softmax
    from m2e_plugin.training.features import default_cache_root
    from m2e_plugin.training.lite import FourQFeatures, fit_temperature, load_config, member_configs, out_of_fold

    torch.set_num_threads(1)
    config = load_config()
    data = FourQFeatures.load(args.data_home, default_cache_root() / "features" / "lite" / "fourq",
                              kinds=list(member_configs(config)))
    moods = clip_moods(args.data_home, data.track_ids)
    oof = out_of_fold(config, data, progress=False)
    quad = quadrant_softmax(oof["even"], fit_temperature(oof["even"], data.y)["quadrant_temperature"])
    rows = [("tagger alone (no coherence)", moods)]
    rows += [(f"cohere_moods, full weight at P(side) >= {x:g}{' (lite)' if i == 0 else ''}",
              cohere_moods(moods, quad, full_weight_at=x)) for i, x in enumerate(args.full_weight_at)]
    print(f"{len(data.y)} 4Q clips, out-of-fold quadrant probabilities (seed {config['seed']}); load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| moods | clips with a contradicting mood | sided moods contradicting | sided moods (consistent) | "
          "moods | median / mean per clip | clips with none | clips with an antonym pair |")
    print("|---|---|---|---|---|---|---|---|")
    for name, probs in rows:
        f = mood_set_figures(probs > 0.5, quadrants=data.y)
        print(f"| {name} | {f['share_contradicting_quadrant']:.3f} | {f['sided_moods_contradicting']:.3f} | "
              f"{f['sided_moods']} ({f['sided_moods'] - f['contradicting_moods']}) | {int((probs > 0.5).sum())} | "
              f"{f['median_moods']:.0f} / {f['mean_moods']:.2f} | {f['share_with_no_mood']:.3f} | "
              f"{f['antonym_pair_rate']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
