"""Plugin system: built-ins through the hook, in-memory plugins, out-of-tree entry-point plugins (a package built in
tmp_path with its own .dist-info, nothing installed), broken and misspelt plugins, M2E_LOAD_PLUGINS, `m2e plugins`,
`m2e extract --extractor <plugin>` and Ctrl-C safety of a batch."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pluggy
import pytest
import soundfile as sf

from m2e_plugin import hookimpl, plugins
from m2e_plugin.demo import synth_music

REPO_ROOT = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
"""A third-party m2e plugin: loudness descriptors, pure numpy."""
import os
import time

import numpy as np

from m2e_plugin import hookimpl


class ToyExtractor:
    name = "toy"
    version = "1.2"
    sample_rate = 8000
    outputs = ("lowlevel.toy.rms", "lowlevel.toy.peak", "metadata.audio_properties.length")

    def __init__(self, delay=0.0, crash_shorter_than=0.0, **_ignored):
        self.delay = float(delay)
        self.crash_shorter_than = float(crash_shorter_than)

    def compute(self, audio, sr):
        if self.delay:
            time.sleep(self.delay)
        if audio.size / sr < self.crash_shorter_than:  # simulates a native crash / OOM kill of the worker
            os._exit(3)
        x = np.asarray(audio, dtype=np.float64)
        return {"lowlevel.toy.rms": float(np.sqrt(np.mean(x ** 2))), "lowlevel.toy.peak": float(np.abs(x).max()),
                "metadata.audio_properties.length": x.size / sr}


@hookimpl
def m2e_register_extractors(register):
    register(ToyExtractor)
'''

BROKEN_MODULE = "raise ImportError('m2e_broken needs a library that is not installed')\n"

MISSPELT_MODULE = '''
from m2e_plugin import hookimpl


@hookimpl
def m2e_register_extractor(register):
    pass
'''


def make_plugin_site(root: Path, packages: dict[str, tuple[str, str, str]]) -> Path:
    """A folder for sys.path holding ``{module: (distribution, version, source)}`` with .dist-info entry points."""
    site = root / "site"
    for module, (dist, version, source) in packages.items():
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[m2e]\n{module.removeprefix('m2e_')} = {module}\n")
    return site


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # tests/conftest.py


@pytest.fixture
def plugin_site(tmp_path, monkeypatch) -> Path:
    site = make_plugin_site(tmp_path, {
        "m2e_toy": ("m2e-toy", "1.2.3", TOY_MODULE),
        "m2e_broken": ("m2e-broken", "0.1", BROKEN_MODULE),
    })
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def _env(site: Path, **extra) -> dict:
    env = dict(os.environ)
    paths = [str(site), str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def _m2e(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "m2e_plugin", *args], env=env, capture_output=True, text=True,
                          timeout=120, **kw)


# ------------------------------------------------------------------------------------------------- in process

def test_builtins_register_through_the_hook():
    extractors = plugins.get_extractors()
    assert {"lite", "music2emo"} <= set(extractors)
    builtin = [p for p in plugins.list_plugins() if p["builtin"]]
    assert [p["name"] for p in builtin] == list(plugins.DEFAULT_PLUGINS)
    assert builtin[0]["hooks"] == ["m2e_register_models"]  # the models; each serves as an extractor too
    assert builtin[0]["models"] == builtin[0]["extractors"] == ["lite", "music2emo"]
    for cls in (extractors["lite"], extractors["music2emo"]):
        assert all(isinstance(o, str) for o in cls.outputs)
        assert "highlevel.music2emo.valence.mean" in cls.outputs
        assert "highlevel.moodtheme.all.happy" in cls.outputs


def test_in_memory_plugin_and_unknown_name():
    class Constant:
        name, version, sample_rate, outputs = "constant", "0", 100, ("x.y",)

        def compute(self, audio, sr):
            return {"x.y": 1.0}

    class Plugin:
        @hookimpl
        def m2e_register_extractors(self, register):
            register(Constant)

    plugins.register_plugin(Plugin(), name="constant-plugin")
    assert plugins.get_extractor("constant").compute(np.zeros(10), 100) == {"x.y": 1.0}
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["constant-plugin"]["extractors"] == ["constant"]
    plugins.unregister_plugin("constant-plugin")
    with pytest.raises(ValueError, match="unknown extractor 'constant'.*available: lite, music2emo"):
        plugins.get_extractor_class("constant")


def test_plugin_that_raises_or_registers_junk_is_reported_and_skipped():
    class Exploding:
        @hookimpl
        def m2e_register_extractors(self, register):
            raise RuntimeError("boom")

    class NoOutputs:
        name, version, sample_rate = "no-outputs", "1", 100

        def compute(self, audio, sr):
            return {}

    class Junk:
        @hookimpl
        def m2e_register_extractors(self, register):
            register(NoOutputs)

    class Thief:  # tries to take a built-in's name
        @hookimpl
        def m2e_register_extractors(self, register):
            register(type("FakeLite", (), {"name": "lite", "version": "9", "sample_rate": 1, "outputs": (),
                                          "compute": lambda self, a, s: {}}))
            register(type("Own", (), {"name": "thief-own", "version": "1", "sample_rate": 100, "outputs": ("x.y",),
                                     "compute": lambda self, a, s: {"x.y": 0.0}}))

    for name, obj in (("exploding", Exploding()), ("junk", Junk()), ("thief", Thief())):
        plugins.register_plugin(obj, name=name)
    with pytest.warns(plugins.PluginLoadWarning) as caught:
        extractors = plugins.get_extractors()
    messages = " | ".join(str(w.message) for w in caught)
    assert "raised RuntimeError: boom" in messages
    assert "NoOutputs lacks outputs" in messages
    assert "'lite' is already registered by 'm2e_plugin.backends.builtin'" in messages
    assert extractors["lite"].__module__ == "m2e_plugin.extractor"  # the built-in keeps its name
    assert "no-outputs" not in extractors
    errors = {p["name"]: p.get("error") for p in plugins.list_plugins()}
    assert "boom" in errors["exploding"] and "lacks outputs" in errors["junk"]
    # The unknown-name hint lists the plugins that serve nothing, not the thief, whose own extractor works.
    assert "thief-own" in extractors and "already registered" in errors["thief"]
    with pytest.raises(ValueError, match=r"failed to load: exploding, junk; see"):
        plugins.get_extractor_class("nosuch")


def test_misspelt_hook_fails_loudly():
    class Misspelt:
        @hookimpl
        def m2e_register_extractor(self, register):  # missing the final "s"
            pass

    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'm2e_register_extractor'.*did you mean "
                                                           "'m2e_register_extractors'"):
        plugins.register_plugin(Misspelt(), name="misspelt")
    assert not plugins.get_plugin_manager().has_plugin("misspelt")


def test_entry_points_load_lazily_and_a_broken_one_is_skipped(plugin_site):
    assert "m2e_toy" not in sys.modules
    plugins.get_plugin_manager()  # the manager alone does not touch entry points
    assert "m2e_toy" not in sys.modules
    with pytest.warns(plugins.PluginLoadWarning, match="m2e_broken needs a library"):
        extractors = plugins.get_extractors()
    assert extractors["toy"].__module__ == "m2e_toy"
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["toy"] == {"name": "toy", "version": "1.2.3", "distribution": "m2e-toy", "builtin": False,
                             "hooks": ["m2e_register_extractors"], "models": [], "extractors": ["toy"]}
    assert "ImportError" in listed["broken"]["error"] and listed["broken"]["extractors"] == []
    pool = plugins.get_extractor("toy").compute(np.full(800, 0.5), 8000)
    assert pool == {"lowlevel.toy.rms": 0.5, "lowlevel.toy.peak": 0.5, "metadata.audio_properties.length": 0.1}


def test_load_plugins_allow_list(plugin_site, monkeypatch):
    monkeypatch.setenv("M2E_LOAD_PLUGINS", "m2e-toy")  # by distribution name: the broken one is never imported
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugins.PluginLoadWarning)
        names = [p["name"] for p in plugins.list_plugins()]
    assert names == [*plugins.DEFAULT_PLUGINS, "toy"]
    assert "m2e_broken" not in sys.modules

    plugins.reset()
    monkeypatch.setenv("M2E_LOAD_PLUGINS", "")  # empty: built-ins only
    assert [p["name"] for p in plugins.list_plugins()] == list(plugins.DEFAULT_PLUGINS)

    plugins.reset()
    monkeypatch.setenv("M2E_LOAD_PLUGINS", "toy,nonesuch")  # by entry-point name; unknown names are reported
    with pytest.warns(plugins.PluginLoadWarning, match="'nonesuch' but no installed m2e plugin"):
        assert "toy" in plugins.get_extractors()


def test_misspelt_entry_point_plugin_is_listed_with_the_hook_name_and_skipped(tmp_path, monkeypatch):
    """A misspelt hook used to stop `extract` and even `plugins`, so the culprit could not be found."""
    site = make_plugin_site(tmp_path, {"m2e_misspelt": ("m2e-misspelt", "0.2", MISSPELT_MODULE)})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    with pytest.warns(plugins.PluginLoadWarning, match="plugin 'misspelt' implements unknown hook "
                                                       "'m2e_register_extractor'.*did you mean"):
        extractors = plugins.get_extractors()
    assert {"lite", "music2emo"} <= set(extractors)
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert "unknown hook 'm2e_register_extractor'" in listed["misspelt"]["error"]
    assert listed["misspelt"]["hooks"] == [] and not plugins.get_plugin_manager().has_plugin("misspelt")


def test_a_second_plugin_with_a_taken_name_is_listed_not_dropped(plugin_site, monkeypatch):
    """Two distributions with the same entry-point name: the second vanished from `m2e plugins` without a word."""
    (plugin_site / "other_toy").mkdir()
    (plugin_site / "other_toy" / "__init__.py").write_text(textwrap.dedent(MISSPELT_MODULE))
    info = plugin_site / "m2e_other-0.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: m2e-other\nVersion: 0.5\n")
    (info / "entry_points.txt").write_text("[m2e]\ntoy = other_toy\n")
    importlib.invalidate_caches()
    with pytest.warns(plugins.PluginLoadWarning, match="the plugin name 'toy' is already taken by distribution"):
        listed = {p["name"]: p for p in plugins.list_plugins()}
    loser = next(name for name in listed if name.startswith("toy ("))
    winner = listed["toy"]
    assert "already taken" in listed[loser]["error"] and "error" not in winner
    assert {winner["distribution"], listed[loser]["distribution"]} == {"m2e-toy", "m2e-other"}
    # the unknown-name hint names plugins that did not load: the duplicate and the broken one, not the winner
    with pytest.raises(ValueError) as err:
        plugins.get_extractor_class("nosuch")
    assert f"(plugins that failed to load: broken, {loser}; see `m2e plugins`)" in str(err.value)


# --------------------------------------------------------------------------------------- out of tree, via the CLI

def test_m2e_plugins_lists_an_out_of_tree_plugin(plugin_site):
    proc = _m2e(["plugins"], _env(plugin_site))
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["toy"]["version"] == "1.2.3" and listed["toy"]["extractors"] == ["toy"]
    assert listed["toy"]["hooks"] == ["m2e_register_extractors"]
    assert listed["m2e_plugin.backends.builtin"]["builtin"] is True
    assert "ImportError" in listed["broken"]["error"]
    assert "broken" in proc.stderr  # the failure is also said on stderr
    table = _m2e(["plugins", "--extractors", "--format", "table"], _env(plugin_site))
    assert table.returncode == 0
    assert any(line.split()[:3] == ["toy", "1.2", "toy"] for line in table.stdout.splitlines())


def test_m2e_extract_with_an_out_of_tree_extractor(plugin_site, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "a.wav", np.full(16000, 0.25, dtype=np.float32), 16000)
    sf.write(clips / "b.flac", np.stack([np.full(8000, 0.5), np.full(8000, -0.5)], axis=1), 8000)
    out = tmp_path / "out"
    proc = _m2e(["extract", str(clips), "-o", str(out), "--extractor", "toy", "--format", "csv"], _env(plugin_site))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["done"] == 2 and summary["failed"] == 0
    import csv

    rows = {r["metadata.input.id"]: r for r in csv.DictReader(open(out / "descriptors.csv"))}
    assert set(rows) == {"a.wav", "b.flac"}
    assert float(rows["a.wav"]["lowlevel.toy.rms"]) == pytest.approx(0.25, abs=1e-3)  # after 16k -> 8k resampling
    assert float(rows["a.wav"]["metadata.audio_properties.length"]) == pytest.approx(1.0)
    assert float(rows["b.flac"]["lowlevel.toy.peak"]) == pytest.approx(0.0, abs=1e-6)  # stereo mixed to mono
    assert rows["b.flac"]["metadata.extractor.name"] == "toy"

    unknown = _m2e(["extract", str(clips), "-o", str(tmp_path / "o2"), "--extractor", "nope"], _env(plugin_site))
    assert unknown.returncode == 2 and "unknown extractor 'nope'" in unknown.stderr
    # The broken plugin of the site is said once, plainly: no Python warning with its source line.
    broken = [line for line in proc.stderr.splitlines() if "broken" in line]
    assert broken and all(line.startswith("m2e: m2e plugin 'broken'") for line in broken), proc.stderr
    assert "PluginLoadWarning" not in proc.stderr and "warnings.warn" not in proc.stderr


def test_m2e_plugins_says_an_allow_list_name_matches_nothing(plugin_site):
    """`m2e plugins` is where a user checks M2E_LOAD_PLUGINS: a typo in it must show there."""
    proc = _m2e(["plugins"], _env(plugin_site, M2E_LOAD_PLUGINS="toy,nonesuch"))
    assert proc.returncode == 0, proc.stderr
    assert "toy" in {p["name"] for p in json.loads(proc.stdout)}
    assert "M2E_LOAD_PLUGINS names 'nonesuch' but no installed m2e plugin has that name" in proc.stderr


@pytest.mark.parametrize("jobs,signum,code,group", [(1, signal.SIGINT, 130, False), (2, signal.SIGINT, 130, False),
                                                     (2, signal.SIGINT, 130, True), (1, signal.SIGTERM, 143, False),
                                                     (2, signal.SIGTERM, 143, False), (2, signal.SIGTERM, 143, True)])
def test_ctrl_c_or_sigterm_leaves_only_complete_files_and_the_rerun_resumes(plugin_site, tmp_path, jobs, signum,
                                                                             code, group):
    """SIGTERM (a scheduler, `timeout`, `docker stop`) used to kill the batch mid-run: its run record stayed
    "running". It now stops as Ctrl-C does, without finishing the running tracks. A Ctrl-C finishes only the
    tracks running in a worker (queued ones ran too, counted as running). ``group``: the signal goes to the whole
    process group, as a terminal's Ctrl-C or `timeout` sends it (a group SIGTERM kills the workers first)."""
    clips = tmp_path / "clips"
    clips.mkdir()
    n = 10
    for i in range(n):
        sf.write(clips / f"c{i:02d}.wav", synth_music(0.5, 8000, seed=i), 8000)
    out = tmp_path / "out"
    args = ["extract", str(clips), "-o", str(out), "--extractor", "toy", "-O", "delay=0.4", "--jobs", str(jobs)]
    # A shell's background job inherits SIGINT ignored (POSIX); the child must see Ctrl-C as a terminal user's would.
    def own_group_and_default_sigint():
        if group:
            os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "m2e_plugin", *args], env=_env(plugin_site),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=own_group_and_default_sigint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 2:
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "InvalidStateError" not in stderr, stderr
    finishing = re.search(r"finishing (\d+) running track", stderr)
    if signum == signal.SIGTERM:
        assert finishing is None, stderr  # stops now: nothing is promised
    elif finishing:
        assert int(finishing.group(1)) <= jobs, stderr  # one track per worker, no queued ones
    assert json.loads(stdout)["interrupted"] is True
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["status"] == "interrupted" and runs[-1]["counts"]["done"] >= 2
    finished = sorted(out.glob("*.json"))
    assert 2 <= len(finished) < n
    for f in finished:  # every file present is complete
        assert set(json.loads(f.read_text())["lowlevel"]["toy"]) == {"rms", "peak"}
    assert not [p for p in out.rglob("*") if p.name.endswith(".m2e-tmp")]

    again = _m2e(args[:-4] + ["-O", "delay=0.4"], _env(plugin_site))  # same settings, one job
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["already_done"] == len(finished) and summary["done"] == n - len(finished)
    assert len(list(out.glob("*.json"))) == n


def test_trace_plugins_writes_hook_calls_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv("M2E_TRACE_PLUGINS", "1")
    plugins.get_extractors()
    assert "m2e_register_models [hook]" in capsys.readouterr().err


def test_a_worker_that_dies_costs_only_its_own_track(plugin_site, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(5):
        sf.write(clips / f"c{i}.wav", synth_music(0.3 if i == 2 else 1.0, 8000, seed=i), 8000)
    out = tmp_path / "out"
    proc = _m2e(["extract", str(clips), "-o", str(out), "--extractor", "toy", "--jobs", "2",
                 "-O", "crash_shorter_than=0.5", "-O", "delay=0.2"], _env(plugin_site))
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in out.glob("*.json")) == ["c0.wav.json", "c1.wav.json", "c3.wav.json", "c4.wav.json"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["c2.wav"] and "worker process died" in errors[0]["error"]


def test_the_plugin_table_keeps_a_multi_line_error_on_its_row():
    from m2e_plugin.cli.plugins import _table

    listing = [{"name": "ok", "version": "1", "hooks": ["m2e_register_models"], "models": ["a"], "extractors": ["a"]},
               {"name": "bad", "version": None, "hooks": [], "models": [], "extractors": [],
                "error": "failed to register: PluginValidationError: Plugin 'bad' for hook 'x'\nhookimpl definition: "
                         "x(a)\nArgument(s) {'a'} are declared in the hookimpl but can not be found in the hookspec"}]
    lines = _table(listing, extractors=False, models=False).splitlines()
    assert len(lines) == 3 and lines[2].startswith("bad ")
    assert "ERROR: failed to register: PluginValidationError: Plugin 'bad' for hook 'x' / hookimpl definition" in lines[2]
