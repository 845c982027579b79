"""OPTIONAL, run once by hand: the essentia reference for the mood/theme CNN's mel front end.

Essentia is AGPL, so it is never a dependency of m2e; install it in a scratch environment:

    python3 -m venv /tmp/esenv && /tmp/esenv/bin/pip install essentia numpy
    /tmp/esenv/bin/python tests/resources/moodtheme/make_essentia_fixture.py tests/resources/moodtheme/essentia_mel.npz

It makes deterministic test signals (no recorded music) and stores them with essentia's mel spectrogram computed the
way MTG-Jamendo's ``scripts/melspectrograms.py`` did for the baseline CNN (12 kHz, frames 512, hop 256, centred,
Hann, power spectrum -> 96 Slaney mel bands unit_tri 0-6 kHz, 20*log10 floored at -200 dB).
"""

import sys

import essentia
import essentia.standard as es
import numpy as np

SR = 12000


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 880.0))
    chirp = 0.3 * np.sin(2 * np.pi * (50 * t + 1100 * t * t))  # sweeps 50 Hz .. 5.5 kHz
    envelope = np.abs(np.sin(2 * np.pi * 2 * t))
    music = (chord * envelope + chirp + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    quiet = (1e-3 * music).astype(np.float32)  # the low end of the dB range
    with_silence = music.copy()
    with_silence[SR // 2 : SR] = 0.0  # digital silence inside: the -200 dB floor
    return {
        "music": music,
        "quiet": quiet,
        "with_silence": with_silence,
        "short_300": music[:300].copy(),  # shorter than one frame
        "odd_12289": np.concatenate([music, music])[:12289].copy(),  # one sample past a hop multiple
    }


def essentia_mel(audio: np.ndarray) -> np.ndarray:
    window = es.Windowing(type="hann", normalized=False, zeroPadding=0)
    spectrum = es.Spectrum()
    mel = es.MelBands(numberBands=96, sampleRate=SR, lowFrequencyBound=0, highFrequencyBound=SR / 2,
                      inputSize=512 // 2 + 1, weighting="linear", normalize="unit_tri",
                      warpingFormula="slaneyMel", type="power")
    amp2db = es.UnaryOperator(type="lin2db", scale=2)
    out = [amp2db(mel(spectrum(window(frame))))
           for frame in es.FrameGenerator(audio, frameSize=512, hopSize=256, startFromZero=False)]
    return np.array(out, dtype=np.float32).T  # (96, frames)


if __name__ == "__main__":
    arrays = {}
    for name, audio in signals().items():
        arrays[f"audio_{name}"] = audio
        arrays[f"mel_{name}"] = essentia_mel(audio)
    arrays["essentia_version"] = np.array(essentia.__version__)
    np.savez_compressed(sys.argv[1], **arrays)
    print({k: v.shape for k, v in arrays.items()})
