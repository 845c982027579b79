"""Record the mood/theme network's logits on fixed inputs (the essentia fixture's synthetic music looped to 1, 3,
10 and 30 s), so that tests/test_moodtheme.py fails if the port or the shipped weights drift. Re-run only after a
deliberate change:  python tests/resources/moodtheme/make_network_fixture.py
"""

import json
import math
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.backbones.moodtheme import SR, MoodThemeCNN, raw_logits

HERE = Path(__file__).parent

if __name__ == "__main__":
    torch.set_num_threads(1)
    music = np.load(HERE / "essentia_mel.npz")["audio_music"]
    network = MoodThemeCNN.load()
    logits = {}
    for seconds in (1.0, 3.0, 10.0, 30.0):
        audio = np.tile(music, math.ceil(seconds * SR / len(music)))[: int(seconds * SR)]
        logits[f"{seconds:g}s"] = [round(float(v), 6) for v in raw_logits(network, [audio])[0]]
    (HERE / "network_logits.json").write_text(json.dumps({"input": __doc__.split(",")[0], "logits": logits}) + "\n")
