"""The renderings the harmony evaluation runs on: several General MIDI soundfonts, instruments and tempi.

A recogniser tuned on one rendering learns that timbre (the audio key estimator once scored 0.82 on the FluidR3
piano it was tuned on and 0.70 on TimGM6mb's piano), so settings are chosen by leave-one-rendering-out
cross-validation over the ``TUNING`` renderings, and ``HELD_OUT`` - a soundfont and an instrument no tuning
rendering and no issue uses, picked before any tuning - is only ever evaluated, never tuned on, and scored once when
every setting is chosen. ``SEEN`` renderings were held out once and have been scored before, so they are reported
but no longer clean held-out figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Rendering:
    """One way to play the corpus: a soundfont (first existing path), a GM program for every part, a tempo."""

    name: str
    soundfonts: tuple[str, ...]
    program: int
    bpm: float
    package: str  # the Debian package that ships the soundfont
    description: str

    def soundfont(self) -> str | None:
        """The first installed path of this rendering's soundfont, or None."""
        return next((p for p in self.soundfonts if Path(p).is_file()), None)


_FLUIDR3 = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")
_TIMGM = ("/usr/share/sounds/sf2/TimGM6mb.sf2",)
_FLUIDR3_MONO = ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3",)
_GMBANK = ("/usr/share/sounds/sf2/sf_GMbank.sf2",)
_MUSESCORE = ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "/usr/share/sounds/sf3/MuseScore_General.sf3")
_MUSESCORE_FULL = ("/usr/share/sounds/sf3/MuseScore_General_Full.sf3",)  # the HQ file, not the Lite one

TUNING: tuple[Rendering, ...] = (
    Rendering("fluidr3-piano", _FLUIDR3, 0, 100.0, "fluid-soundfont-gm", "FluidR3 GM, acoustic grand piano, 100 bpm"),
    Rendering("timgm-piano", _TIMGM, 0, 100.0, "timgm6mb-soundfont", "TimGM6mb, acoustic grand piano, 100 bpm"),
    Rendering("fluidr3-organ", _FLUIDR3, 19, 100.0, "fluid-soundfont-gm", "FluidR3 GM, church organ, 100 bpm"),
    Rendering("timgm-strings", _TIMGM, 48, 80.0, "timgm6mb-soundfont", "TimGM6mb, string ensemble, 80 bpm"),
    Rendering("fluidr3mono-guitar", _FLUIDR3_MONO, 24, 120.0, "fluidr3mono-gm-soundfont",
              "FluidR3 Mono, nylon guitar, 120 bpm"),
    Rendering("gmbank-brass", _GMBANK, 61, 90.0, "csound-soundfont", "csound sf_GMbank, brass section, 90 bpm"),
)
# Reserved by the lead before the transcription front end was tried or any setting of this release chosen: a
# soundfont (the full MuseScore General) and an instrument (accordion) that neither the tuning renderings nor any
# issue name. Evaluated only, never used to choose a setting; scored once, after every choice.
HELD_OUT = Rendering("musescore-accordion", _MUSESCORE_FULL, 21, 110.0, "musescore-general-soundfont",
                     "MuseScore General, accordion, 110 bpm")
# The previous release's held-out rendering: never tuned on, but scored (and reported) before, so no longer clean.
SEEN: tuple[Rendering, ...] = (
    Rendering("musescore-choir", _MUSESCORE, 52, 100.0, "musescore-general-soundfont-small",
              "MuseScore General (Lite), choir aahs, 100 bpm"),
)
RENDERINGS: dict[str, Rendering] = {r.name: r for r in TUNING + (HELD_OUT,) + SEEN}


def rendering(name: str) -> Rendering:
    """The rendering called ``name``; ``ValueError`` names the known ones."""
    try:
        return RENDERINGS[name]
    except KeyError:
        raise ValueError(f"unknown rendering {name!r}; known: {', '.join(RENDERINGS)}") from None


def select(names: list[str]) -> list[Rendering]:
    """Renderings named on the command line: names, ``"tuning"``, ``"held-out"``, ``"seen"`` (scored before) or
    ``"all"`` (in table order)."""
    chosen: list[Rendering] = []
    for name in names:
        group = {"all": TUNING + (HELD_OUT,) + SEEN, "tuning": TUNING, "held-out": (HELD_OUT,),
                 "seen": SEEN}.get(name)
        for r in group or (rendering(name),):
            if r not in chosen:
                chosen.append(r)
    return chosen


def format_renderings_table(results: dict, vgmidi: dict | None = None) -> str:
    """One Markdown row per rendering: chord majmin/mirex/sevenths, key from audio, key from the chords, the previous
    release's chord majmin and audio key, and with ``vgmidi`` (rendering name -> ``{"pieces", "key"}``) the audio key
    on the VGMIDI pieces."""
    head = ("| rendering | pieces | chord majmin | chord mirex | chord sevenths | key (audio) | key_from_chords | "
            "chord majmin, previous release | key (audio), previous release |")
    lines = [head + (" key (audio), VGMIDI |" if vgmidi else ""), "|---" * (10 if vgmidi else 9) + "|"]
    rows = {name: [s.chord["offline"]["majmin"], s.chord["offline"]["mirex"], s.chord["offline"]["sevenths"],
                   s.key["audio"], s.key["chords"], s.chord["offline, previous release"]["majmin"],
                   s.key["audio, previous release"]] + ([vgmidi[name]["key"]] if vgmidi else [])
            for name, s in results.items()}
    seen = {r.name for r in SEEN}
    for name, values in rows.items():
        label = (f"{name} (held out)" if name == HELD_OUT.name else
                 f"{name} (held out before, scored before)" if name in seen else name)
        lines.append(f"| {label} | {results[name].pieces} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    tuning = [values for name, values in rows.items() if name in {r.name for r in TUNING}]
    if len(tuning) > 1:
        lines.append(f"| mean of the {len(tuning)} tuning renderings | | " +
                     " | ".join(f"{v:.3f}" for v in np.mean(tuning, axis=0)) + " |")
    return "\n".join(lines)
