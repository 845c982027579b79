"""Models as plugins: an out-of-tree package (built in tmp_path with its own .dist-info entry point, nothing installed)
registers a model through ``m2e_register_models``; ``m2e plugins`` lists it with its card and ``m2e predict``,
``m2e extract`` and ``m2e stream`` serve it by name. Plugins that fail in any way are listed and skipped; only the
model the user asked for is fatal."""

from __future__ import annotations

import importlib
import json
import warnings

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin import hookimpl, plugins
from m2e_plugin.demo import synth_music
from test_plugins import _env, _m2e, make_plugin_site

LOUDNESS_MODULE = '''
"""A third-party emotion model: loudness -> arousal, spectral brightness -> valence. Pure numpy."""
import numpy as np

from m2e_plugin import EmotionBackend, Prediction, hookimpl

TAGS = ("calm", "energetic")


class LoudnessModel(EmotionBackend):
    name = "loudness"
    version = "0.3"
    sample_rate = 8000
    window_seconds = 1.0
    hop_seconds = 0.5
    mood_tags = TAGS

    def __init__(self, device="cpu", **options):
        self.device = device

    def predict_track(self, blocks):
        x = np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks])
        rms = float(np.sqrt(np.mean(x ** 2)))
        bright = float(np.mean(np.abs(np.diff(x)))) / (float(np.mean(np.abs(x))) + 1e-9)
        arousal = 1.0 + 8.0 * min(1.0, 4.0 * rms)
        valence = 1.0 + 8.0 * min(1.0, bright)
        return Prediction(valence, arousal, np.array([1.0 - (arousal - 1) / 8, (arousal - 1) / 8]))


class Exploding(EmotionBackend):
    name = "exploding"

    def __init__(self, device="cpu", **options):
        raise RuntimeError("exploding needs weights that are not there")

    def predict_track(self, blocks):
        raise AssertionError("never built")


@hookimpl
def m2e_register_models(register):
    register(LoudnessModel, card={"description": "loudness and brightness", "licence": "MIT"})
    register(Exploding)
'''

JUNK_MODULE = '''
from m2e_plugin import hookimpl


@hookimpl
def m2e_register_models(register):
    register(dict)  # not an EmotionBackend
'''

MISSPELT_MODULE = '''
from m2e_plugin import hookimpl


@hookimpl
def m2e_register_model(register):
    pass
'''


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # tests/conftest.py


@pytest.fixture
def model_site(tmp_path, monkeypatch):
    site = make_plugin_site(tmp_path, {
        "m2e_loudness": ("m2e-loudness", "0.3.0", LOUDNESS_MODULE),
        "m2e_junkmodel": ("m2e-junkmodel", "1.0", JUNK_MODULE),
        "m2e_misspeltmodel": ("m2e-misspeltmodel", "1.0", MISSPELT_MODULE),
    })
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, synth_music(4.0, 22050), 22050)
    return path


def test_registry_in_process(model_site):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = plugins.get_models()
    assert list(models)[:2] == ["lite", "music2emo"]  # built-ins first, through the same hook
    assert models["loudness"].plugin == "loudness" and models["loudness"].backend.__module__ == "m2e_loudness"
    card = models["loudness"].card()
    assert card["sample_rate"] == 8000 and card["mood_tags"] == ["calm", "energetic"] and card["licence"] == "MIT"
    messages = " | ".join(str(w.message) for w in caught)
    assert "expects an EmotionBackend subclass" in messages and "unknown hook 'm2e_register_model'" in messages
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["loudness"]["models"] == ["exploding", "loudness"]
    assert "EmotionBackend" in listed["junkmodel"]["error"] and "m2e_register_model" in listed["misspeltmodel"]["error"]
    # A model that cannot load is fatal only when asked for, with its own message.
    from m2e_plugin import Music2emo

    with pytest.raises(RuntimeError, match="exploding needs weights"):
        Music2emo(model="exploding")
    with pytest.raises(ValueError, match=r"unknown model 'nope'; available: .*loudness.*failed to load: "
                                         r".*junkmodel"):
        Music2emo(model="nope")
    assert Music2emo(model="loudness", device="cpu").predict((np.zeros(800), 8000))["model"] == "loudness"


def test_m2e_plugins_lists_the_model_with_its_card(model_site):
    proc = _m2e(["plugins"], _env(model_site))
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["loudness"]["version"] == "0.3.0" and listed["loudness"]["models"] == ["exploding", "loudness"]
    assert listed["loudness"]["extractors"] == ["exploding", "loudness"]
    assert listed["m2e_plugin.backends.builtin"]["models"] == ["lite", "music2emo"]
    assert "junkmodel" in proc.stderr and "misspeltmodel" in proc.stderr
    models = _m2e(["plugins", "--models"], _env(model_site))
    assert models.returncode == 0, models.stderr
    cards = {m["name"]: m for m in json.loads(models.stdout)}
    assert cards["loudness"]["card"]["description"] == "loudness and brightness"
    assert cards["lite"]["card"]["sample_rate"] > 0 and cards["lite"]["card"]["mood_tags"]
    assert cards["music2emo"]["card"]["sample_rate"] == 24000


def test_predict_extract_and_stream_serve_the_plugin_model(model_site, clip, tmp_path):
    env = _env(model_site)
    pred = _m2e(["predict", "--model", "loudness", "--timeline", str(clip)], env)
    assert pred.returncode == 0, pred.stderr
    out = json.loads(pred.stdout)
    assert out["model"] == "loudness" and set(out["mood_probabilities"]) == {"calm", "energetic"}
    assert [e["start"] for e in out["timeline"]][:3] == [0.0, 0.5, 1.0] and out["timeline"][-1]["end"] == 4.0

    ext = _m2e(["extract", str(clip), "-o", str(tmp_path / "out"), "--model", "loudness", "--frames"], env)
    assert ext.returncode == 0, ext.stderr
    pool = json.loads((tmp_path / "out" / "clip.wav.json").read_text())
    assert pool["highlevel"]["music2emo"]["valence"]["value"] == pytest.approx(out["valence"])
    frames = json.loads((tmp_path / "out" / "clip.wav.frames.json").read_text())
    assert frames["highlevel"]["music2emo"]["valence"] == pytest.approx([e["valence"] for e in out["timeline"]])
    assert pool["metadata"]["model"]["name"] == "loudness"
    (run,) = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert run["model"]["model_card"]["licence"] == "MIT"  # the card: once per run, in the run manifest

    stream = _m2e(["stream", "--model", "loudness", "--input", str(clip), "--no-pace", "--rate", "0",
                   "--osc", "127.0.0.1:9", "--window", "1", "--hop", "0.5", "--device", "cpu"], env)
    assert stream.returncode == 0, stream.stderr
    summary = json.loads(stream.stdout.strip().splitlines()[-1])
    assert summary["model"] == "loudness" and summary["updates"] == len(out["timeline"])


@pytest.mark.parametrize("command", [["predict", "--model", "exploding"], ["predict", "--model", "nope"],
                                     ["extract", "-o", "OUT", "--model", "exploding"],
                                     ["stream", "--model", "exploding", "--no-pace", "--input"]])
def test_only_the_requested_model_is_fatal(model_site, clip, tmp_path, command):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command] + [str(clip)]
    proc = _m2e(args, _env(model_site))
    assert proc.returncode == 2, proc.stderr
    assert "exploding needs weights" in proc.stderr or "unknown model 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_in_memory_model_plugin_serves_the_realtime_control_check(monkeypatch):
    from m2e_plugin.realtime.control import ControlServer
    from test_realtime_support import FeatureBackend, register_test_models

    register_test_models(monkeypatch, FeatureBackend)
    requested = []
    sidecar = type("S", (), {"runner": type("R", (), {"request": staticmethod(requested.append)})()})()
    server = ControlServer.__new__(ControlServer)
    server.sidecar = sidecar
    server.apply("/m2e/ctl/model", ["rt-feature"])
    assert requested == ["rt-feature"]
    with pytest.raises(ValueError, match="unknown model 'nope'; available: .*rt-feature"):
        server.apply("/m2e/ctl/model", ["nope"])


class _Registered:
    @hookimpl
    def m2e_register_models(self, register):
        raise RuntimeError("cannot even register")


def test_a_plugin_raising_in_the_hook_is_listed_and_the_builtins_still_serve():
    plugins.register_plugin(_Registered(), name="raiser")
    with pytest.warns(plugins.PluginLoadWarning, match="m2e_register_models raised RuntimeError"):
        assert {"lite", "music2emo"} <= set(plugins.get_models())
    assert "cannot even register" in {p["name"]: p for p in plugins.list_plugins()}["raiser"]["error"]


class _BadCard:
    @hookimpl
    def m2e_register_models(self, register):
        from test_realtime_support import FeatureBackend

        register(type("Carded", (FeatureBackend,), {"name": "carded"}), card=lambda: 1 / 0)


def test_a_model_whose_card_fails_is_listed_and_the_rest_still_serve():
    plugins.register_plugin(_BadCard(), name="bad-card")
    with pytest.warns(plugins.PluginLoadWarning, match="model 'carded': no extractor, its card cannot be read"):
        extractors = plugins.get_extractors()
    assert {"lite", "music2emo"} <= set(extractors) and "carded" not in extractors
    described = {m["name"]: m for m in (e.describe() for e in plugins.get_models().values())}
    assert "ZeroDivisionError" in described["carded"]["error"] and "card" in described["lite"]
    assert "card cannot be read" in {p["name"]: p for p in plugins.list_plugins()}["bad-card"]["error"]


class _Misbehaving:
    """Models whose predictions the host cannot use: each must fail with its name, never reach an output."""

    @hookimpl
    def m2e_register_models(self, register):
        from m2e_plugin import EmotionBackend, Prediction

        def model(name, make):
            def predict_track(self, blocks):
                for _ in blocks:
                    pass
                return make()
            return type(name, (EmotionBackend,), {"name": name, "sample_rate": 8000, "mood_tags": ("calm", "sad"),
                                                  "__init__": lambda self, device="cpu", **o: None,
                                                  "predict_track": predict_track})

        register(model("nan-arousal", lambda: Prediction(5.0, float("nan"), np.array([0.2, 0.3]))))
        register(model("short-moods", lambda: Prediction(5.0, 5.0, np.array([0.2]))))
        register(model("mood-above-one", lambda: Prediction(5.0, 5.0, np.array([0.2, 1.7]))))
        register(model("not-a-prediction", lambda: {"valence": 5.0}))
        register(model("well-behaved", lambda: Prediction(12.0, 5.0, np.array([0.2, 0.3]))))


@pytest.mark.parametrize("name, cause", [("nan-arousal", "arousal nan: not a finite number"),
                                         ("short-moods", r"shape \(1,\) for its 2 mood tags"),
                                         ("mood-above-one", r"not all finite and within \[0, 1\]"),
                                         ("not-a-prediction", "dict, not a Prediction")])
def test_a_models_unusable_prediction_is_an_error_naming_it(name, cause):
    """A NaN used to reach the JSON line (invalid JSON) and a short mood vector shifted moods onto the wrong tags."""
    from m2e_plugin import Music2emo

    plugins.register_plugin(_Misbehaving(), name="misbehaving")
    model = Music2emo(model=name, device="cpu")
    for timeline in (False, True):
        with pytest.raises(ValueError, match=f"model {name!r} returned .*{cause}"):
            model.predict((np.full(8000, 0.1, dtype=np.float32), 8000), timeline=timeline)


def test_values_beyond_the_scale_are_the_models_own():
    """A regression may leave 1-9 (music2emo's raw head does); the host passes it on, as the README says."""
    from m2e_plugin import Music2emo

    plugins.register_plugin(_Misbehaving(), name="misbehaving")
    out = Music2emo(model="well-behaved", device="cpu").predict((np.full(8000, 0.1, dtype=np.float32), 8000))
    assert out["valence"] == 12.0 and out["mood_probabilities"] == {"calm": 0.2, "sad": 0.3}
