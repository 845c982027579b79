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
    runner = type("R", (), {"request": staticmethod(lambda name, **_: requested.append(name))})()
    sidecar = type("S", (), {"runner": runner})()
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


# ------------------------------------------------------------------------- what a plugin author gets wrong

LOUDCOPY_MODULE = '''
from m2e_loudness import LoudnessModel
from m2e_plugin import hookimpl


class LoudCopy(LoudnessModel):
    version = "9.9"


@hookimpl
def m2e_register_models(register):
    register(LoudCopy)  # the name "loudness" is taken by m2e-loudness
'''

NEEDS_NEWER_M2E_MODULE = "raise AssertionError('a plugin for another m2e must not even be imported')\n"


def _requires(site, dist: str, version: str, *lines: str) -> None:
    metadata = site / f"{dist.replace('-', '_')}-{version}.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text() + "".join(f"Requires-Dist: {line}\n" for line in lines))


def test_a_failing_plugin_is_named_with_its_distribution(tmp_path, monkeypatch):
    """The lines named the entry point ('copy'), not what `pip` knows ('m2e-loudcopy'), nor the distribution holding
    a taken model name; and a plugin requiring another m2e (after `pip install m2e==<older>`, which only warns) was
    imported and run anyway. Now it is skipped before its import, in one line naming both versions."""
    site = make_plugin_site(tmp_path, {
        "m2e_loudness": ("m2e-loudness", "0.3.0", LOUDNESS_MODULE),
        "m2e_copy": ("m2e-loudcopy", "2.0", LOUDCOPY_MODULE),
        "m2e_future": ("m2e-future", "5.0", NEEDS_NEWER_M2E_MODULE),
        "m2e_optional": ("m2e-optional", "1.0", JUNK_MODULE.replace("register(dict)", "pass")),
    })
    _requires(site, "m2e-future", "5.0", "m2e>=99")
    _requires(site, "m2e-loudness", "0.3.0", "m2e>=0.0.1", "numpy")
    _requires(site, "m2e-optional", "1.0", 'm2e>=99; extra == "gpu"')  # an extra's requirement: not this install's
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = plugins.get_models()
    messages = [str(w.message) for w in caught]
    from m2e_plugin import __version__

    (future,) = [m for m in messages if "'future'" in m]
    assert future.startswith("m2e plugin 'future' (from m2e-future 5.0): requires m2e>=99 but m2e "
                             f"{__version__} is installed"), future
    (copy,) = [m for m in messages if "'copy'" in m]  # m2e-loudness registered first (same folder: either order)
    assert copy.startswith("m2e plugin 'copy' (from m2e-loudcopy 2.0): model name 'loudness' is already registered "
                           "by 'loudness' (from m2e-loudness 0.3.0)") or \
        copy.startswith("m2e plugin 'loudness' (from m2e-loudness 0.3.0): model name 'loudness' is already "
                        "registered by 'copy' (from m2e-loudcopy 2.0)"), copy
    assert {"lite", "music2emo", "loudness"} <= set(models)
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert "requires m2e>=99" in listed["future"]["error"] and listed["future"]["distribution"] == "m2e-future"
    assert "error" not in listed["optional"]
    proc = _m2e(["plugins"], _env(site))
    assert proc.returncode == 0 and "m2e plugins: future (from m2e-future 5.0): requires m2e>=99" in proc.stderr


class _Undeclared:
    """Models whose declared attributes the host cannot run with."""

    @hookimpl
    def m2e_register_models(self, register):
        from m2e_plugin import EmotionBackend, Prediction

        def model(name, **attributes):
            def predict_track(self, blocks):
                for _ in blocks:
                    pass
                return Prediction(5.0, 5.0, np.full(len(self.mood_tags), 0.5))
            return type(name, (EmotionBackend,), {"name": name, "version": "1.0", "sample_rate": 8000,
                                                  "mood_tags": ("calm", "sad"), **attributes,
                                                  "__init__": lambda self, device="cpu", **o: None,
                                                  "predict_track": predict_track})

        register(model("no-rate", sample_rate=0))  # forgot it: predict died in a ZeroDivisionError, stream in a
        register(model("fractional-rate", sample_rate=16000.5))  # traceback about a ring buffer's capacity
        register(model("tag-string", mood_tags="calm"))  # read as the tags 'c', 'a', 'l', 'm'
        register(model("twice-calm", mood_tags=("calm", "calm")))  # one probability silently lost
        register(model("no-moods", mood_tags=()))  # valence/arousal only: fine
        register(model("float-rate", sample_rate=16000.0))  # a whole number of Hz: fine


@pytest.mark.parametrize("name, cause", [("no-rate", "sample_rate 0"), ("fractional-rate", "sample_rate 16000.5"),
                                         ("tag-string", "mood_tags 'calm'"),
                                         ("twice-calm", r"mood_tags \('calm', 'calm'\)")])
def test_a_model_the_host_cannot_run_is_refused_when_built_naming_it(name, cause):
    from m2e_plugin import Music2emo
    from m2e_plugin.plugins import get_extractor

    plugins.register_plugin(_Undeclared(), name="undeclared")
    with pytest.raises(ValueError, match=f"model {name!r} has {cause}"):
        Music2emo(model=name, device="cpu")
    backend = plugins.get_model(name).backend()
    with pytest.raises(ValueError, match=f"model {name!r} has {cause}"):
        Music2emo(model=backend)  # an instance built by the caller: checked too
    with pytest.raises(ValueError, match=f"model {name!r} has {cause}"):
        get_extractor(name, device="cpu")


def test_models_without_moods_or_with_a_float_rate_still_run():
    from m2e_plugin import Music2emo

    plugins.register_plugin(_Undeclared(), name="undeclared")
    samples = (np.full(8000, 0.1, dtype=np.float32), 8000)
    assert Music2emo(model="no-moods", device="cpu").predict(samples)["mood_probabilities"] == {}
    assert Music2emo(model="float-rate", device="cpu").predict(samples)["model"] == "float-rate"


def test_m2e_stream_says_which_model_has_no_sample_rate(tmp_path, clip):
    site = make_plugin_site(tmp_path, {"m2e_loudness": ("m2e-loudness", "0.3.0",
                                                        LOUDNESS_MODULE.replace("sample_rate = 8000", "sample_rate = 0"))})
    proc = _m2e(["stream", "--model", "loudness", "--input", str(clip), "--no-pace", "--osc", "-", "--device", "cpu"],
                _env(site, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot load model 'loudness': model 'loudness' has sample_rate 0" in proc.stderr


def _versioned(version):
    class Plugin:
        @hookimpl
        def m2e_register_models(self, register):
            from m2e_plugin import EmotionBackend, Prediction

            class Versioned(EmotionBackend):
                name, sample_rate, mood_tags = "versioned", 8000, ("calm",)

                def __init__(self, device="cpu", **options):
                    self.device = device

                def predict_track(self, blocks):
                    for _ in blocks:
                        pass
                    return Prediction(float(version.split(".")[-1]), 5.0, np.array([0.5]))

            Versioned.version = version
            register(Versioned)
    return Plugin()


def test_resuming_with_another_version_of_the_model_is_refused(tmp_path, clip):
    """A plugin upgraded between two runs (retrained weights) resumed into the old folder: the old tracks counted as
    done and the new ones got the new model, two versions' values in one table under one set of settings."""
    from m2e_plugin import batch

    tracks, _ = batch.expand_inputs([str(clip)])
    out = tmp_path / "out"

    def run(version, **kw):
        for name in ("model-1.1", "model-1.2"):
            if plugins.get_plugin_manager().has_plugin(name):
                plugins.unregister_plugin(name)
        plugins.register_plugin(_versioned(version), name=f"model-{version}")
        return batch.run_batch(tracks, out, extractor="versioned", options={"device": "cpu"}, fmt="csv",
                               progress="never", log=lambda _: None, **kw)

    assert run("1.1").done == 1 and run("1.1").already_done == 1  # the same version resumes
    with pytest.raises(batch.BatchError,
                       match="other settings.*'model_version': '1.1'.* then.*'model_version': '1.2'.* now"):
        run("1.2")
    assert run("1.2", overwrite=True).done == 1
    assert "2.0" in (out / "descriptors.csv").read_text()  # valence 2.0: the 1.2 model's


def test_a_folder_made_before_the_model_version_was_recorded_resumes_with_that_version(tmp_path, clip):
    """Folders made by m2e before the model's version joined the settings have none in their manifest: an upgraded
    m2e refused every such folder (a catalogue recomputed). Its run log names the version each run used: the same
    version resumes with the tracks kept, another (or a run log that cannot tell) is refused."""
    import json

    from m2e_plugin import batch
    from m2e_plugin.batch.outputs import settings_fingerprint

    tracks, _ = batch.expand_inputs([str(clip)])
    out = tmp_path / "out"
    plugins.register_plugin(_versioned("1.1"), name="model-1.1")
    run = lambda **kw: batch.run_batch(tracks, out, extractor="versioned", options={"device": "cpu"},  # noqa: E731
                                       fmt="csv", progress="never", log=lambda _: None, **kw)

    def as_made_before(version_in_log):
        manifest_path = out / ".m2e" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["settings"].pop("model_version", None)  # (kept so by a resume already)
        manifest_path.write_text(json.dumps(manifest))
        sources = out / ".m2e" / "sources.jsonl"  # each finished track carries the old manifest's fingerprint
        sources.write_text("".join(json.dumps({**json.loads(line), "settings": settings_fingerprint(manifest)}) + "\n"
                                   for line in sources.read_text().splitlines()))
        runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
        for r in runs:
            if "model" in r:  # (a run with every track already done loads no model)
                r["model"]["model_card"]["version"] = version_in_log
        (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))

    assert run().done == 1
    as_made_before("1.1")
    assert run().already_done == 1
    as_made_before("1.0")
    with pytest.raises(batch.BatchError, match="other settings"):
        run()


def test_a_profiles_moods_a_plugin_model_lacks_are_one_line_not_one_per_tag():
    """Wekinator's fixed 56-mood vector against a 2-tag plugin model logged 54 lines at every start."""
    from m2e_plugin.realtime.mapping import load_mapping

    (line,) = load_mapping("wekinator").unknown_moods(("calm", "energetic"))
    assert line.startswith("wekinator: 54 moods it names are not among the model's 2 tags ('action', ")
    typo = load_mapping("wekinator").unknown_moods(("calm", "energetic", "hapy"))
    assert any("names mood 'happy', which the model does not have (did you mean 'hapy'?)" in p for p in typo)
