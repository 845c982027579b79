"""Golden test of the one analysis pass: one file through `predict --timeline`, `extract --frames` and the realtime
engine's file mode (no pace, no smoothing) gives the same windows (end-aligned tail included) and the same values,
bit for bit, with the embedded default model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin import plugins
from m2e_plugin.demo import synth_music
from m2e_plugin.predictor import Music2emo

WINDOW, HOP = 4.0, 3.0


@pytest.fixture
def song(tmp_path):
    # 44.1 kHz stereo (resampled to the model's rate on the way) and 11.5 s: windows at 0, 3, 6 and a tail at 7.5.
    y = synth_music(11.5, 44100, seed=3)
    path = tmp_path / "song.wav"
    sf.write(path, np.stack([y, 0.7 * y], axis=1), 44100)
    return path


def _stream_windows(path, model):
    from m2e_plugin.realtime.capture import FileSource
    from m2e_plugin.realtime.engine import Engine, ModelRunner

    results, lock = [], threading.Lock()

    def collect(r):
        with lock:
            results.append(r)

    source = FileSource(path, pace=False)
    engine = Engine(source, ModelRunner(model), window=WINDOW, hop=HOP, on_result=collect)
    engine.start()
    source.start()
    try:
        assert engine.done.wait(120), "the file analysis did not finish"
    finally:
        source.stop()
        engine.stop()
    assert engine.errors == 0 and engine.skipped == 0 and source.error is None
    return [(r.stream_time - r.window_seconds, r.stream_time, r.result["valence"], r.result["arousal"])
            for r in results]


def test_predict_extract_and_stream_cut_and_score_alike(song):
    model = Music2emo(model="lite", device="cpu")
    timeline = model.predict(song, timeline=True, window=WINDOW, hop=HOP)["timeline"]
    predicted = [(e["start"], e["end"], e["valence"], e["arousal"]) for e in timeline]
    assert [s for s, *_ in predicted] == [0.0, 3.0, 6.0, 7.5]  # the tail window ends at the end of the file
    assert predicted[-1][1] == 11.5

    pool = plugins.get_extractor("lite", device="cpu", frames=True, window=WINDOW, hop=HOP).compute_file(song)
    extracted = list(zip(*(pool[f"frames.highlevel.music2emo.{k}"]
                           for k in ("frame_start", "frame_end", "valence", "arousal"))))

    streamed = _stream_windows(song, model)

    for other in (extracted, streamed):
        assert len(other) == len(predicted)
        for (s0, e0, v0, a0), (s1, e1, v1, a1) in zip(predicted, other):
            assert (round(s1, 3), round(e1, 3)) == (s0, e0)
            assert (v1, a1) == (v0, a0)  # identical, not merely close
    assert len({v for _, _, v, _ in predicted}) > 1  # the values follow the music (the comparison is not vacuous)


def test_predict_with_timeline_decodes_the_file_once(song, monkeypatch):
    from m2e_plugin import analysis

    calls = []
    real = analysis.stream_audio

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "stream_audio", counting)
    out = Music2emo(model="lite", device="cpu").predict(song, timeline=True, window=WINDOW, hop=HOP)
    assert len(calls) == 1 and len(out["timeline"]) == 4 and out["duration"] == 11.5
