"""Label spaces shared by every part of m2e: the 56 MTG-Jamendo mood/theme tags, their valence/arousal word norms,
their train-split priors, the side of the valence/arousal axes some of them take (and so their antonym pairs), the
Russell quadrants; and :func:`mood_set_figures`, how large and how coherent sets of predicted moods are.
"""

from __future__ import annotations

import numpy as np

# tag: (valence 1-9, arousal 1-9, prior in MTG-Jamendo split-0 train). Order = Music2Emo's model output order
# (alphabetical, = tag_list.npy[127:]). V/A values are Music2Emo's moodtag_va_scores.csv (Warriner et al. norms);
# priors are its probas_train.npy.
_TAG_TABLE: dict[str, tuple[float, float, float]] = {
    "action": (6.0, 6.19, 0.029751733842597244),
    "adventure": (7.4, 6.36, 0.026535330183938083),
    "advertising": (4.68, 3.25, 0.03648607900291487),
    "background": (5.05, 3.67, 0.040607096190571915),
    "ballad": (6.33, 3.6, 0.019398934566288068),
    "calm": (6.89, 1.67, 0.02683686802693738),
    "children": (6.36, 5.09, 0.015277917378631017),
    "christmas": (8.37, 5.9, 0.03698864207458036),
    "commercial": (4.11, 4.43, 0.01919790933762187),
    "cool": (6.82, 3.43, 0.017087144436626796),
    "corporate": (4.9, 4.74, 0.035078902402251484),
    "dark": (5.08, 4.09, 0.062317820886521255),
    "deep": (5.44, 3.9, 0.04311991154889939),
    "documentary": (5.91, 3.76, 0.034073776258920496),
    "drama": (4.37, 5.14, 0.025429691426273996),
    "dramatic": (5.17, 6.59, 0.019599959794954266),
    "dream": (7.43, 4.37, 0.0500552819378832),
    "emotional": (5.11, 5.32, 0.050155794552216304),
    "energetic": (7.57, 6.1, 0.08613931048346568),
    "epic": (7.19, 4.8, 0.06040808121419238),
    "fast": (4.57, 6.45, 0.0062317820886521255),
    "film": (6.33, 4.1, 0.07498241029249171),
    "fun": (8.37, 6.32, 0.022112775153281736),
    "funny": (7.59, 5.38, 0.010955874962307769),
    "game": (6.79, 5.05, 0.016986631822293697),
    "groovy": (6.42, 4.67, 0.007839983917981706),
    "happy": (8.47, 6.05, 0.09317519348678259),
    "heavy": (4.78, 3.65, 0.009850236204643682),
    "holiday": (7.18, 4.93, 0.009850236204643682),
    "hopeful": (7.44, 4.84, 0.013770228163634535),
    "inspiring": (7.42, 5.9, 0.05638757664086843),
    "love": (8.0, 5.36, 0.04955271886621771),
    "meditative": (6.47, 2.85, 0.03759171776057895),
    "melancholic": (3.74, 4.13, 0.022916876067946526),
    "melodic": (6.65, 4.86, 0.06010654337119308),
    "motivational": (6.76, 6.37, 0.03739069253191275),
    "movie": (7.24, 4.39, 0.02080611116695145),
    "nature": (6.88, 4.0, 0.013770228163634535),
    "party": (7.18, 6.08, 0.012765102020303547),
    "positive": (7.57, 5.5, 0.03779274298924515),
    "powerful": (6.46, 5.41, 0.010654337119308473),
    "relaxing": (8.19, 4.29, 0.07669112473615439),
    "retro": (5.6, 4.0, 0.013971253392300733),
    "romantic": (7.61, 5.12, 0.03648607900291487),
    "sad": (2.1, 3.49, 0.03769223037491205),
    "sexy": (7.42, 6.8, 0.005930244245652829),
    "slow": (4.0, 2.89, 0.029651221228264146),
    "soft": (7.13, 3.04, 0.02090662378128455),
    "soundscape": (6.35, 3.85, 0.041712734948236005),
    "space": (6.89, 3.6, 0.036385566388581765),
    "sport": (6.95, 4.7, 0.02020303548095286),
    "summer": (7.5, 5.48, 0.026233792340938786),
    "trailer": (4.44, 2.85, 0.01598150567896271),
    "travel": (7.89, 5.55, 0.008945622675645793),
    "upbeat": (7.14, 4.92, 0.02171072469594934),
    "uplifting": (6.95, 4.7, 0.045130163835561364),
}

MOOD_TAGS: tuple[str, ...] = tuple(_TAG_TABLE)
TAG_VALENCE_AROUSAL: dict[str, tuple[float, float]] = {t: (v, a) for t, (v, a, _) in _TAG_TABLE.items()}
TAG_PRIORS: tuple[float, ...] = tuple(p for (_, _, p) in _TAG_TABLE.values())

# Moods that belong to one side of the valence or arousal axis (a hand-made reading of the tags, fixed before any
# figure was measured with it); "party" is both positive and active. The other 36 tags take no side.
MOOD_SIDES: dict[str, tuple[str, ...]] = {
    "valence+": ("happy", "fun", "funny", "positive", "upbeat", "uplifting", "party"),
    "valence-": ("sad", "melancholic", "dark"),
    "arousal+": ("energetic", "fast", "powerful", "heavy", "action", "party"),
    "arousal-": ("calm", "relaxing", "meditative", "slow", "soft"),
}
# Moods that contradict each other (opposite sides of one axis); a clip should rarely be given both of a pair.
ANTONYM_PAIRS: tuple[tuple[str, str], ...] = tuple(
    [(a, b) for a in MOOD_SIDES["valence+"] for b in MOOD_SIDES["valence-"]]
    + [(a, b) for a in MOOD_SIDES["arousal+"] for b in MOOD_SIDES["arousal-"]]
)

VA_MIN, VA_MAX, VA_MID = 1.0, 9.0, 5.0
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
#: A mood less probable than this is never named as a "top" mood (a timeline's top moods, a plot's, the live top
#: mood): silence gives every mood 0, and ranking zeros would name the first tags of the alphabet.
TOP_MOOD_FLOOR = 0.1


def top_moods(probabilities: dict[str, float], k: int) -> list[str]:
    """The ``k`` most probable tags of ``{tag: probability}`` that reach :data:`TOP_MOOD_FLOOR`."""
    ranked = sorted(probabilities, key=probabilities.get, reverse=True)[:k]
    return [tag for tag in ranked if probabilities[tag] >= TOP_MOOD_FLOOR]


def quadrant(valence: float, arousal: float, *, midpoint: float = VA_MID) -> str:
    """Russell quadrant on the 1-9 scale: Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A (the midpoint counts as positive)."""
    positive_v = valence >= midpoint
    positive_a = arousal >= midpoint
    if positive_a:
        return "Q1" if positive_v else "Q2"
    return "Q4" if positive_v else "Q3"


def normalise_va(value: float) -> float:
    """Map the 1-9 scale onto 0-1 (clipped), for OSC and other 0-1 consumers."""
    return min(1.0, max(0.0, (float(value) - VA_MIN) / (VA_MAX - VA_MIN)))


def mood_set_figures(predicted, tags=MOOD_TAGS, quadrants=None) -> dict:
    """How many moods rows (clips, windows) predict and how coherent they are: ``predicted`` (rows, len(tags)) bool.

    Median / mean moods per row, the share with none, the share with an antonym pair (:data:`ANTONYM_PAIRS`) and
    how many tags were ever predicted. With the rows' true ``quadrants`` (0..3 = Q1..Q4), also the moods that sit
    on the wrong side of an axis (:data:`MOOD_SIDES`: "happy" on a Q2/Q3 clip, "calm" on a Q1/Q2 clip): the share
    of rows with one, and their share among the predicted moods that take a side.
    """
    predicted = np.asarray(predicted, dtype=bool)
    tags = list(tags)
    counts = predicted.sum(axis=1)
    antonym = np.zeros(len(predicted), dtype=bool)
    for a, b in ANTONYM_PAIRS:
        if a in tags and b in tags:
            antonym |= predicted[:, tags.index(a)] & predicted[:, tags.index(b)]
    figures = {"median_moods": float(np.median(counts)), "mean_moods": round(float(counts.mean()), 3),
               "share_with_no_mood": round(float((counts == 0).mean()), 4),
               "antonym_pair_rate": round(float(antonym.mean()), 4),
               "tags_ever_predicted": int(predicted.any(axis=0).sum())}
    if quadrants is not None:
        side = {name: np.isin(tags, moods) for name, moods in MOOD_SIDES.items()}
        q = np.asarray(quadrants)
        positive, active = np.isin(q, (0, 3))[:, None], np.isin(q, (0, 1))[:, None]
        wrong = predicted & (np.where(positive, side["valence-"], side["valence+"])
                             | np.where(active, side["arousal-"], side["arousal+"]))
        sided = predicted & (side["valence+"] | side["valence-"] | side["arousal+"] | side["arousal-"])
        figures.update(share_contradicting_quadrant=round(float(wrong.any(axis=1).mean()), 4),
                       sided_moods=int(sided.sum()), contradicting_moods=int(wrong.sum()),
                       sided_moods_contradicting=round(float(wrong.sum() / max(int(sided.sum()), 1)), 4))
    return figures

