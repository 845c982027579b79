"""OSC mappings: which value goes to which address, with what range, curve and type, plus edge-triggered events.

A mapping is a YAML (or TOML) file; the shipped presets (``default``, ``resolume``, ``touchdesigner``,
``wekinator``, ``max``) live in ``realtime/mappings/`` and are loaded the same way as a user's file
(``--osc HOST:PORT@show.yaml``)::

    port: 7000                    # default UDP port of the receiver (optional)
    heartbeat: false              # send /m2e/status (default true)
    values:                       # sent on every output step (--rate)
      - source: arousal           # a value name (see VALUES below) or a list of names (one message, many args)
        address: /composition/layers/1/video/opacity
        in: [0, 1]                # input range (default: the value's own, see VALUES)
        range: [0.2, 1.0]         # output range (default [0, 1]; [1, 9] for *_raw...)
        curve: linear             # linear | smooth | exp:K (K > 1 slow start, K < 1 fast start) | log
        type: float               # float | int | bool (bool: mapped value >= midpoint of range)
      - source: mood.*            # one message per mood tag of the model
        address: /m2e/mood/{tag}
    events:                       # sent once, when they happen (never re-sent at the output rate)
      - event: quadrant           # the quadrant changed (after hysteresis and dwell)
        address: /composition/columns/{quadrant}/connect
        args: [1]
      - event: mood_onset         # mood_onset | mood_offset: a tag's probability crossed threshold (Schmitt)
        mood: happy               # a tag, or "*" for every tag ({tag} in the address)
        threshold: 0.5
        hysteresis: 0.1
        dwell: 2.0                # seconds the crossing must hold (default 2 s)
        address: /m2e/event/{tag}/on
      - event: beat               # a beat of the causal beat tracker
        address: /m2e/beat

VALUES: ``valence``, ``arousal`` (0-1), ``valence_raw``, ``arousal_raw`` (1-9), ``quadrant`` (1-4, with
hysteresis), ``top_index`` (index of the top mood in the model's tags), ``mood.<tag>`` (0-1; 0 for a tag the
model does not have, so a fixed list keeps its length across models), ``moods`` (the top tags, strings),
``latency_ms``; fast features: ``level_db``, ``peak_db`` (dBFS), ``level`` (RMS mapped -60..0 dB -> 0-1),
``onset`` (0-1 onset strength), ``tempo`` (BPM, 0 until known), ``beat_phase`` (0-1 within the beat).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from m2e_plugin.realtime.smoothing import EdgeTrigger

Messages = list[tuple[str, list]]

# Natural input range of each value (used when a rule gives no `in`) and the default output range.
NATURAL = {"valence": (0.0, 1.0), "arousal": (0.0, 1.0), "valence_raw": (1.0, 9.0), "arousal_raw": (1.0, 9.0),
           "quadrant": (1.0, 4.0), "top_index": (0.0, 55.0), "latency_ms": (0.0, 1000.0),
           "level_db": (-60.0, 0.0), "peak_db": (-60.0, 0.0), "level": (0.0, 1.0), "onset": (0.0, 1.0),
           "tempo": (0.0, 300.0), "beat_phase": (0.0, 1.0)}
PASS_THROUGH = {"valence_raw", "arousal_raw", "quadrant", "top_index", "latency_ms", "level_db", "peak_db",
                "tempo"}  # sent as they are unless the rule asks for a range
EVENTS = ("quadrant", "mood_onset", "mood_offset", "beat")
VALUE_KEYS = {"source", "address", "in", "range", "curve", "type", "default"}
EVENT_KEYS = {"event", "address", "args", "mood", "threshold", "hysteresis", "dwell"}
PRESETS = ("default", "resolume", "touchdesigner", "wekinator", "max")


@dataclass
class SentAddress:
    """One address a mapping sends to: example arguments (their types are the message's), one RANGE entry per
    argument (``{"MIN", "MAX"}``, ``{"VALS"}`` or None: unbounded) and a description (see :meth:`Mapping.outputs`)."""

    address: str
    args: list
    ranges: list
    description: str


class MappingError(ValueError):
    """A mapping file is malformed (the message names the file and the rule)."""


def state_values(state) -> dict[str, Any]:
    """Every value a rule can name, from one :class:`~m2e_plugin.realtime.osc.EmotionState`."""
    from m2e_plugin.labels import normalise_va

    top = state.tags.index(state.moods[0]) if state.moods and state.moods[0] in state.tags else -1
    values: dict[str, Any] = {
        "valence": normalise_va(state.valence), "arousal": normalise_va(state.arousal),
        "valence_raw": float(state.valence), "arousal_raw": float(state.arousal), "quadrant": int(state.quadrant),
        "top_index": top, "latency_ms": float(state.latency_ms), "moods": list(state.moods),
    }
    values.update({f"mood.{t}": float(p) for t, p in zip(state.tags, state.probs)})
    values.update(state.features or {})
    return values


def _curve(name: str):
    if name == "linear":
        return lambda x: x
    if name == "smooth":
        return lambda x: x * x * (3 - 2 * x)
    if name == "log":
        return lambda x: math.log1p(9 * x) / math.log(10)
    m = re.fullmatch(r"exp:([0-9.]+)", name)
    if m and float(m.group(1)) > 0:
        k = float(m.group(1))
        return lambda x: x ** k
    raise ValueError(f"unknown curve {name!r} (linear, smooth, log, exp:K)")


@dataclass
class ValueRule:
    sources: list[str]
    address: str
    in_range: tuple[float, float] | None
    out_range: tuple[float, float] | None
    curve: Any
    type: str
    default: float = 0.0
    wildcard: bool = False

    def convert(self, name: str, value):
        if isinstance(value, (list, tuple)):  # `moods`: strings go out as they are
            return list(value)
        base = name.split(".")[0] if name.startswith("mood.") else name
        lo, hi = self.in_range or NATURAL.get(base, (0.0, 1.0))
        if self._passes_through(base):
            # sent as it is (a quadrant, a tempo in BPM): `type` converts it, nothing scales it to 0-1
            raw = float(value)
            return [int(round(raw))] if self.type == "int" else [raw != 0] if self.type == "bool" else [raw]
        x = 0.0 if hi == lo else min(1.0, max(0.0, (float(value) - lo) / (hi - lo)))
        x = self.curve(x)
        olo, ohi = self.out_range or (0.0, 1.0)
        y = olo + x * (ohi - olo)
        if self.type == "int":
            return [int(round(y))]
        if self.type == "bool":
            return [bool(y >= (olo + ohi) / 2)]
        return [float(y)]

    def _passes_through(self, base: str) -> bool:
        return self.out_range is None and self.in_range is None and base in PASS_THROUGH

    def output_range(self, name: str) -> tuple[float, float] | None:
        """The interval :meth:`convert` keeps ``name``'s number in (None: sent as it is, unbounded, or a bool)."""
        base = name.split(".")[0] if name.startswith("mood.") else name
        if name == "moods" or self.type == "bool" or self._passes_through(base):
            return None
        lo, hi = self.out_range or (0.0, 1.0)
        return (round(lo), round(hi)) if self.type == "int" else (lo, hi)

    def messages(self, values: dict[str, Any], tags) -> Messages:
        if self.wildcard:
            return [(self.address.replace("{tag}", t), self.convert(f"mood.{t}", values.get(f"mood.{t}", 0.0)))
                    for t in tags]
        args: list = []
        for name in self.sources:
            args += self.convert(name, values.get(name, self.default))
        return [(self.address, args)]


@dataclass
class EventRule:
    on: str
    address: str
    args: list | None
    mood: str | None = None
    threshold: float = 0.5
    hysteresis: float = 0.1
    dwell: float = 2.0
    triggers: dict[str, EdgeTrigger] = field(default_factory=dict)

    def messages(self, state, values: dict[str, Any], now: float) -> Messages:
        if self.on == "quadrant":
            if not state.quadrant_changed:
                return []
            return [self._message("quadrant", int(state.quadrant))]
        if self.on == "beat":
            return [self._message(None, 1)] if state.beat else []
        want = "onset" if self.on == "mood_onset" else "offset"
        tags = state.tags if self.mood == "*" else [self.mood]
        out: Messages = []
        for tag in tags:
            trigger = self.triggers.get(tag)
            if trigger is None:
                trigger = self.triggers[tag] = EdgeTrigger(self.threshold, self.hysteresis, self.dwell)
            edge = trigger.update(float(values.get(f"mood.{tag}", 0.0)), now)
            if edge == want:
                out.append(self._message("tag", tag))
        return out

    def _message(self, placeholder: str | None, value) -> tuple[str, list]:
        """The address with ``{placeholder}`` filled in, and the rule's args (default: the value itself)."""
        address = self.address.replace("{" + placeholder + "}", str(value)) if placeholder else self.address
        return address, list(self.args) if self.args is not None else [value]

    def possible_messages(self, tags) -> Messages:
        """Every address this rule can send to with ``tags`` (the running model's), with example arguments."""
        if self.on == "quadrant":
            lo, hi = NATURAL["quadrant"]
            candidates = [self._message("quadrant", q) for q in range(int(lo), int(hi) + 1)]
        elif self.on == "beat":
            candidates = [self._message(None, 1)]
        else:
            candidates = [self._message("tag", t) for t in (tags if self.mood == "*" else [self.mood])]
        return list(dict(candidates).items())  # one per address (a fixed address takes every quadrant)


class Mapping:
    """A loaded mapping (see the module doc). :meth:`build` must be called once per output step: events keep
    state between steps."""

    def __init__(self, spec: dict, origin: str):
        self.origin = origin
        if not isinstance(spec, dict):
            raise MappingError(f"{origin}: a mapping is a table with `values` and/or `events`")
        unknown = set(spec) - {"port", "heartbeat", "values", "events", "description"}
        if unknown:
            raise MappingError(f"{origin}: unknown keys {sorted(unknown)}")
        port = spec.get("port", 9000)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise MappingError(f"{origin}: port: {port!r} is not a port number (1-65535)")
        self.port = port
        heartbeat = spec.get("heartbeat", True)
        if not isinstance(heartbeat, bool):  # "no" in quotes is a non-empty string, read as true
            raise MappingError(f"{origin}: heartbeat: {heartbeat!r} is not true or false")
        self.heartbeat = heartbeat
        self.description = str(spec.get("description", ""))
        for key in ("values", "events"):
            if not isinstance(spec.get(key) or [], list):
                raise MappingError(f"{origin}: {key}: a list of rules, got {spec[key]!r}")
        self.values = [self._value_rule(r, i) for i, r in enumerate(spec.get("values") or [])]
        self.events = [self._event_rule(r, i) for i, r in enumerate(spec.get("events") or [])]
        if not self.values and not self.events:
            raise MappingError(f"{origin}: no values and no events")

    def _value_rule(self, r, i) -> ValueRule:
        where = f"{self.origin}: values[{i}]"
        try:
            if not isinstance(r, dict) or "address" not in r or "source" not in r:
                raise ValueError("needs `source` and `address`")
            if set(r) - VALUE_KEYS:  # a misspelt `curv` or `rnage` would be ignored without a word
                raise ValueError(f"unknown keys {sorted(set(r) - VALUE_KEYS)} (known: {', '.join(sorted(VALUE_KEYS))})")
            address = _address(r["address"])
            sources = r["source"] if isinstance(r["source"], list) else [r["source"]]
            if not sources or not all(isinstance(s, str) for s in sources):
                raise ValueError("`source` is a value name or a list of names")
            for s in sources:
                if s not in NATURAL and s != "moods" and s != "mood.*" and not s.startswith("mood."):
                    raise ValueError(f"unknown value {s!r}")
            wildcard = sources == ["mood.*"]
            if "mood.*" in sources and not wildcard:
                raise ValueError("`mood.*` must be the only source of its rule")
            if wildcard and "{tag}" not in address:
                raise ValueError("`mood.*` needs {tag} in the address")
            kind = r.get("type", "float")
            if kind not in ("float", "int", "bool"):
                raise ValueError(f"type {kind!r} is not float, int or bool")
            raw = [s for s in sources if s in PASS_THROUGH]
            if raw and r.get("curve", "linear") != "linear" and r.get("in") is None and r.get("range") is None:
                raise ValueError(f"{raw[0]} is sent as it is: a `curve` needs `in` and/or `range` to work on")
            return ValueRule(sources, address, _pair(r.get("in")), _pair(r.get("range")),
                             _curve(str(r.get("curve", "linear"))), kind, _finite(r.get("default", 0.0), "`default`"),
                             wildcard)
        except (ValueError, TypeError) as exc:
            raise MappingError(f"{where}: {exc}") from None

    def _event_rule(self, r, i) -> EventRule:
        where = f"{self.origin}: events[{i}]"
        try:
            # `event`, not `on`: YAML 1.1 reads a bare `on` key as the boolean True.
            if not isinstance(r, dict) or r.get("event") not in EVENTS or "address" not in r:
                raise ValueError(f"needs `event` ({', '.join(EVENTS)}) and `address`")
            if set(r) - EVENT_KEYS:  # a misspelt `treshold` would leave the default without a word
                raise ValueError(f"unknown keys {sorted(set(r) - EVENT_KEYS)} (known: {', '.join(sorted(EVENT_KEYS))})")
            args = r.get("args")
            if args is not None and not isinstance(args, list):
                raise ValueError("`args` is a list")
            mood = r.get("mood")
            if r["event"].startswith("mood_") and not isinstance(mood, str):
                raise ValueError("mood events need `mood` (a tag or \"*\")")
            dwell = float(r.get("dwell", 2.0))
            if not 0 <= dwell < math.inf:
                raise ValueError("dwell must be a number of seconds >= 0")
            threshold, hysteresis = float(r.get("threshold", 0.5)), float(r.get("hysteresis", 0.1))
            if not 0 <= threshold <= 1 or not 0 <= hysteresis <= 1:
                raise ValueError("threshold and hysteresis are probabilities, in [0, 1]")
            return EventRule(r["event"], _address(r["address"]), args, mood, threshold, hysteresis, dwell)
        except (ValueError, TypeError) as exc:
            raise MappingError(f"{where}: {exc}") from None

    def named_moods(self) -> dict[str, str]:
        """{mood tag: the first rule naming it} for every tag this mapping names explicitly (not ``*``)."""
        named: dict[str, str] = {}
        for i, rule in enumerate(self.values):
            for source in rule.sources:
                if source.startswith("mood.") and not rule.wildcard:
                    named.setdefault(source[len("mood."):], f"values[{i}]")
        for i, rule in enumerate(self.events):
            if rule.mood not in (None, "*"):
                named.setdefault(rule.mood, f"events[{i}]")
        return named

    def unknown_moods(self, tags) -> list[str]:
        """One message per mood this mapping names that ``tags`` (the running model's) lack: such a value stays 0
        and such an event never fires, which a misspelt tag in a show file would otherwise do without a word. More
        than 3 without a close tag (a model with other tags) are one message."""
        import difflib

        tags = list(tags)
        problems, unmatched = [], []
        for mood, where in self.named_moods().items():
            if mood in tags:
                continue
            close = difflib.get_close_matches(mood, tags, n=1)
            if not close:
                unmatched.append((mood, where))
                continue
            problems.append(f"{self.origin}: {where} names mood {mood!r}, which the model does not have (did you "
                            f"mean {close[0]!r}?); it stays 0 and its events never fire")
        if len(unmatched) > 3:
            # A model with other tags (a plugin's) lacks most of a profile's 56 (wekinator's fixed vector): one line,
            # not one per tag; a tag close to one of the model's (a typo) keeps its own line above.
            names = ", ".join(repr(m) for m, _ in unmatched[:5])
            return problems + [f"{self.origin}: {len(unmatched)} moods it names are not among the model's "
                               f"{len(tags)} tags ({names}, ...); they stay 0 and their events never fire"]
        return problems + [f"{self.origin}: {where} names mood {mood!r}, which the model does not have; it stays 0 "
                           "and its events never fire" for mood, where in unmatched]

    def outputs(self, tags, top_k: int) -> list[SentAddress]:
        """Every address this mapping sends to, for a model with ``tags`` and ``top_k`` strings at most in
        ``moods``: the value rules' messages built from sample values (so types and addresses come from the code
        that sends them), then the events'. The first rule naming an address describes it."""
        sample: dict[str, Any] = {name: lo for name, (lo, _) in NATURAL.items()}
        sample["moods"] = [tags[0] if tags else ""] * max(1, int(top_k))
        sample.update({f"mood.{t}": 0.0 for t in tags})
        out: dict[str, SentAddress] = {}
        for rule in self.values:
            sources = [[f"mood.{t}"] for t in tags] if rule.wildcard else [rule.sources]
            for names, (address, args) in zip(sources, rule.messages(sample, tags)):
                ranges: list = []
                for name in names:
                    if name == "moods":
                        ranges += [{"VALS": list(tags)} if tags else None] * len(sample["moods"])
                    else:
                        bounds = rule.output_range(name)
                        ranges.append({"MIN": bounds[0], "MAX": bounds[1]} if bounds else None)
                what = ", ".join(names)
                out.setdefault(address, SentAddress(address, args, ranges, f"{what} (profile {self.origin})"))
        for rule in self.events:
            what = f"{rule.on} event" + (f" ({rule.mood})" if rule.mood not in (None, "*") else "")
            for address, args in rule.possible_messages(tags):
                ranges = [{"MIN": int(NATURAL["quadrant"][0]), "MAX": int(NATURAL["quadrant"][1])}] \
                    if rule.on == "quadrant" and rule.args is None else [None] * len(args)
                out.setdefault(address, SentAddress(address, args, ranges,
                                                    f"{what}, sent once when it happens (profile {self.origin})"))
        return list(out.values())

    def build(self, state, now: float) -> Messages:
        """Messages for one output step: every value rule, plus the events that fired now."""
        values = state_values(state)
        out: Messages = []
        for rule in self.values:
            out += rule.messages(values, state.tags)
        for rule in self.events:
            out += rule.messages(state, values, now)
        return out


def _address(text) -> str:
    if not isinstance(text, str) or not text.startswith("/") or " " in text:
        raise ValueError(f"address {text!r} must start with / and contain no spaces")
    return text


def _pair(value) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"a range is [low, high], got {value!r}")
    return _finite(value[0], "a range"), _finite(value[1], "a range")


def _finite(value, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):  # a NaN bound would send NaN to the receiver on every step
        raise ValueError(f"{what} needs finite numbers, got {value!r}")
    return number


def _parse(text: str, origin: str) -> dict:
    if origin.endswith(".toml"):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise MappingError(f"{origin}: TOML mappings need Python >= 3.11; use YAML") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MappingError(f"{origin}: not valid TOML: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{origin}: not valid YAML: {exc}") from None


def load_mapping(name_or_path: str) -> Mapping:
    """A shipped preset by name, or a ``.yaml``/``.yml``/``.toml`` file."""
    text_name = str(name_or_path)
    if text_name in PRESETS:
        text = resources.files("m2e_plugin.realtime").joinpath("mappings", f"{text_name}.yaml").read_text()
        return Mapping(_parse(text, f"{text_name}.yaml"), text_name)
    path = Path(text_name)
    if path.suffix.lower() not in (".yaml", ".yml", ".toml"):
        raise MappingError(f"unknown profile {text_name!r}: use {', '.join(PRESETS)} or a .yaml/.toml mapping file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc.strerror or exc}") from None
    return Mapping(_parse(text, str(path)), str(path))
