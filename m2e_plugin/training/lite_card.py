"""The model card of `lite` v2 (JSON beside the head's weights): sources, licences, sha256s, outputs, training, CV
metrics with their protocol. Written by ``m2e train --model lite``; read by the backend and ``m2e plugins``."""

from __future__ import annotations

import json

import numpy as np


def _safetensors_meta(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


_BACKBONE_OF = {"msd_penultimate": "musicnn MSD_musicnn penultimate embedding (200-d, dense + ReLU + BatchNorm)",
               "mtt_pooled": "musicnn MTT_musicnn pooled vector (1506-d: max and mean over time of the 753 "
                             "front/mid-end channels its dense layer reads)"}


def _musicnn_source(checkpoint: str, dataset: str) -> dict:
    from m2e_plugin.backbones.convert_musicnn import sha256_of
    from m2e_plugin.backbones.musicnn import WEIGHTS_FILES, default_weights

    meta = _safetensors_meta(default_weights(checkpoint))
    return {"what": f"Pons & Serra 2019, musicnn: pre-trained convolutional neural networks for music audio "
                    f"tagging; {checkpoint} checkpoint ({dataset}) of the PyPI musicnn 0.1.0 wheel",
            "wheel_sha256": meta.get("wheel_sha256"), "weights": WEIGHTS_FILES[checkpoint],
            "weights_sha256": sha256_of(default_weights(checkpoint)), "licence": "ISC",
            "converter": meta.get("converter")}


def _trainer_text(members: dict[str, dict]) -> str:
    """How each member was trained, as its config says (fixed epochs, or early stopping)."""
    ways = []
    for kind, member in members.items():
        fixed = member.get("fixed_epochs")
        ways.append(f"{kind}: {fixed} epochs in every CV fold and in the final fit on all clips (no early stopping)"
                    if fixed else f"{kind}: early stopping per CV fold; final fit on all clips for the median best "
                                  "epoch count")
    return "m2e_plugin.training.trainer.Trainer, one run per member (Adam; " + "; ".join(ways) + ")"


def model_card(config: dict, data, metrics: dict | None, epochs: dict, command: str | None) -> dict:
    from m2e_plugin import __version__
    from m2e_plugin.backbones import level, moodtheme
    from m2e_plugin.backends.lite import TRACK_PATCH_STEP
    from m2e_plugin.labels import MOOD_TAGS
    from m2e_plugin.training.lite import QUADRANT_NAMES, member_configs
    from m2e_plugin.training.lite_features import LITE_FEATURE_VERSION

    kinds = list(member_configs(config))
    mood_card = json.loads((moodtheme.WEIGHTS_DIR / moodtheme.CARD_NAME).read_text())
    mood_source = {"source": mood_card.get("source"), "weights": moodtheme.WEIGHTS_NAME,
                   "weights_sha256": mood_card.get("weights_sha256")}
    return {
        "name": "lite",
        "version": str(config["version"]),
        "package_version": __version__,
        "description": "Offline emotion model: musicnn (MSD and MTT) embeddings of level-normalised 3 s patches -> "
                       "linear quadrant heads, their log-probabilities averaged -> Russell quadrant (calibrated) -> "
                       "valence/arousal on 1-9; the MTG-Jamendo mood/theme CNN gives the 56 mood tags.",
        "sample_rate": 16000,
        "features": {"members": {k: _BACKBONE_OF[k] for k in kinds},
                     "combination": "average of the members' quadrant log-probabilities, then temperature",
                     "patch_seconds": 3.0, "pooling": config["pooling"], "track_patch_step": TRACK_PATCH_STEP,
                     "window_patch_step": 1, "level_target_dbfs": level.TARGET_DBFS,
                     "below_hearing": f"the DC offset and content below {level.HIGHPASS_HZ:g} Hz are removed from each "
                                      "block or window before its level is measured (level.py)",
                     "cache_version": LITE_FEATURE_VERSION},
        "valence_arousal": {
            "formula": "5 + scale * (2 P - 1), P(valence+) = P(Q1) + P(Q4), P(arousal+) = P(Q1) + P(Q2), with the "
                       "quadrant probabilities shrunk toward 0.25 by (1 - confidence)",
            "scale": float(config["va_scale"]),
            "confidence": "sqrt(min(1, seconds / full_confidence_seconds)) * clip((level_dbfs - silence floor) / "
                          "(full_confidence_dbfs - silence floor), 0, 1)",
            "full_confidence_seconds": 3.0, "full_confidence_dbfs": -60.0,
            "quiet": "below full_confidence_dbfs, arousal glides linearly in dB toward silence's 1 (arousal - 4 * "
                     "(1 - level factor)), so a fade-out meets silence without a jump; short input at a normal level "
                     "still shrinks toward 5",
            "silence": "below the level module's floor (-70 dBFS gated RMS): valence 5, arousal 1, every mood 0, "
                       "confidence 0",
        },
        "outputs": {
            "valence": "1-9, graded, within [5 - scale, 5 + scale]; above 5 = positive valence more probable",
            "arousal": "1-9, likewise for arousal; below full_confidence_dbfs it glides toward silence's 1",
            "quadrant": "Russell quadrant from valence/arousal (Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A)",
            "quadrant_probabilities": "extras: calibrated (temperature-scaled) quadrant probabilities after shrinkage",
            "confidence": "extras: 0-1, lower for short or quiet input",
            "mood_probabilities": "all 56 MTG-Jamendo mood/theme tags, calibrated so that 0.5 is each tag's "
                                  "threshold (see moodtheme.json), then multiplied by confidence and made coherent "
                                  "with the quadrant (models.lite.cohere_moods: a mood on one side of the valence "
                                  "or arousal axis is scaled by min(1, 2 P(side)))",
        },
        "classes": {"quadrant": list(QUADRANT_NAMES), "mood_tags": list(MOOD_TAGS)},
        "sources": {
            "musicnn": _musicnn_source("MSD_musicnn", "Million Song Dataset tags"),
            **({"musicnn_mtt": _musicnn_source("MTT_musicnn", "MagnaTagATune tags")} if "mtt_pooled" in kinds
               else {}),
            "moodtheme": {"what": "MTG-Jamendo baseline CNN, mood/theme (Bogdanov et al. 2019), see moodtheme.json",
                          **mood_source,
                          "licence_summary": "code and weights Apache-2.0 (MTG/mtg-jamendo-dataset); the tags it "
                                             "was trained on are CC BY-NC-SA 4.0"},
            "training_data": {"dataset": "4Q audio emotion dataset (Panda, Malheiro & Paiva 2018)",
                              "clips": int(len(data.y)), "per_quadrant": np.bincount(data.y, minlength=4).tolist(),
                              "licence": "research and non-commercial use (University of Coimbra)"},
        },
        "training": {"config": config, "final_epochs": epochs, "command": command,
                     "rebuild": ["m2e features --model lite --dataset fourq --data-home <4Q folder>",
                                 "m2e train --model lite --data-home <4Q folder> -o <weights>.safetensors"],
                     "trainer": _trainer_text(member_configs(config))},
        "metrics": ({"cross_validation": metrics,
                     "protocol": f"{config['folds']}-fold CV, stratified by quadrant, grouped by artist, seed "
                                 f"{config['seed']}; pooled out-of-fold predictions of whole 30 s clips (the "
                                 f"product's view: every other 3 s patch); codec_view = the clips after an "
                                 f"AAC/Opus/MP3 round trip (odd patches; codec_quadrant_kept = the same patches "
                                 f"uncoded vs coded); single_3s_patch = each 3 s patch alone"}
                    if metrics else None),
        "calibration": (metrics or {}).get("calibration", {"quadrant_temperature": 1.0}),
        "licence": "head weights: MIT (this project); musicnn weights ISC; mood CNN Apache-2.0 with CC BY-NC-SA 4.0 "
                   "training tags; trained on 4Q clips (research use)",
    }
