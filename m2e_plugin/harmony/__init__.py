"""Harmony: chord recognition (weight-free ``offline`` and the reference's BTC), key estimation, and Music2Emo's
chord/key tokens.

>>> from m2e_plugin.harmony import recognize_chords, key_from_chords, encode_music2emo, mode_id
>>> chords = recognize_chords(samples, sr)                 # [(0.0, 2.04, "C:maj"), (2.04, 4.0, "G:maj"), ...]
>>> tonic, mode, confidence = key_from_chords(chords)      # ("C", "major", 0.83); Music2Emo's method
>>> roots, attrs = encode_music2emo(chords, tonic, mode)   # two (100,) int64 token arrays
>>> x_key = mode_id(mode)                                  # 0 major, 1 minor

With the reference's chord model: ``btc = load_btc("btc_model_large_voca.pt")`` then
``recognize_chords(samples, sr, "btc", model=btc)`` (or ``btc.recognize(samples, sr)``).
``estimate_key(samples, sr)`` estimates the key straight from audio (chroma + key profiles).

Importing this package does not import torch; only :func:`load_btc` does.
"""

from m2e_plugin.harmony.btc import BTCRecognizer, load_btc
from m2e_plugin.harmony.chords import VOCABULARIES, recognize_chords
from m2e_plugin.harmony.encoding import encode_music2emo, mode_id, normalise_chords
from m2e_plugin.harmony.key import estimate_key, key_from_chords
from m2e_plugin.harmony.vocabulary import BTC_LABELS, PITCH_CLASSES

__all__ = [
    "recognize_chords",
    "estimate_key",
    "key_from_chords",
    "load_btc",
    "BTCRecognizer",
    "encode_music2emo",
    "mode_id",
    "normalise_chords",
    "VOCABULARIES",
    "BTC_LABELS",
    "PITCH_CLASSES",
]
