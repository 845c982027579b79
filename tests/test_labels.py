import numpy as np
import pytest

from m2e_plugin.labels import MOOD_TAGS, TAG_PRIORS, TAG_VALENCE_AROUSAL, normalise_va, quadrant


def test_mood_tags_are_the_56_split_tags_in_model_order():
    assert len(MOOD_TAGS) == 56
    assert list(MOOD_TAGS) == sorted(MOOD_TAGS)  # Music2Emo's output order is alphabetical
    assert MOOD_TAGS[0] == "action" and MOOD_TAGS[-1] == "uplifting"
    assert {"ambiental", "horror", "mellow"}.isdisjoint(MOOD_TAGS)


def test_tables_match_the_reference_files(shared_data):
    import csv

    rows = list(csv.DictReader(open(shared_data / "music2emo-meta" / "moodtag_va_scores.csv")))
    assert [r["MoodTag"] for r in rows] == list(MOOD_TAGS)
    for r in rows:
        assert TAG_VALENCE_AROUSAL[r["MoodTag"]] == (float(r["Valence"]), float(r["Arousal"]))
    priors = np.load(shared_data / "music2emo-meta" / "probas_train.npy", allow_pickle=False)
    np.testing.assert_allclose(TAG_PRIORS, priors)
    split_tags = (shared_data / "mtg-jamendo" / "data" / "tags" / "moodtheme_split.txt").read_text().split()
    assert [t.split("---")[1] for t in split_tags] == list(MOOD_TAGS)


@pytest.mark.parametrize("v,a,q", [(7, 7, "Q1"), (3, 7, "Q2"), (3, 3, "Q3"), (7, 3, "Q4"), (5, 5, "Q1"), (4.99, 5, "Q2")])
def test_quadrant(v, a, q):
    assert quadrant(v, a) == q


def test_normalise_va_clips_to_unit_range():
    assert normalise_va(1) == 0.0 and normalise_va(9) == 1.0 and normalise_va(5) == 0.5
    assert normalise_va(-3) == 0.0 and normalise_va(12) == 1.0


def test_mood_set_figures_count_sizes_antonyms_and_contradictions():
    import numpy as np

    from m2e_plugin.labels import MOOD_TAGS, mood_set_figures

    def moods(*tags):
        row = np.zeros(len(MOOD_TAGS), dtype=bool)
        row[[MOOD_TAGS.index(t) for t in tags]] = True
        return row

    predicted = np.stack([moods("happy", "film"),        # Q1: happy agrees, film takes no side
                          moods("happy", "calm"),        # Q2 (-V +A): both contradict
                          moods("sad", "calm", "epic"),  # Q3: both agree
                          moods("party"),                # Q4 (+V -A): party is active: contradicts
                          moods()])                      # Q1, nothing predicted
    f = mood_set_figures(predicted, quadrants=np.array([0, 1, 2, 3, 0]))
    assert f["median_moods"] == 2 and f["mean_moods"] == 1.6 and f["share_with_no_mood"] == 0.2
    assert f["antonym_pair_rate"] == 0.0 and f["tags_ever_predicted"] == 6
    assert f["sided_moods"] == 6 and f["contradicting_moods"] == 3 and f["sided_moods_contradicting"] == 0.5
    assert f["share_contradicting_quadrant"] == 0.4
    both = mood_set_figures(np.stack([moods("happy", "sad"), moods("energetic", "calm", "film")]))
    assert both["antonym_pair_rate"] == 1.0 and "sided_moods" not in both
    # a model with fewer tags: its columns, its pairs
    assert mood_set_figures([[True, True]], tags=["fast", "slow"])["antonym_pair_rate"] == 1.0


def test_top_moods_name_only_moods_that_reach_the_floor():
    from m2e_plugin.labels import TOP_MOOD_FLOOR, top_moods

    probs = {"calm": 0.0, "dark": 0.6, "epic": TOP_MOOD_FLOOR, "fun": TOP_MOOD_FLOOR / 2, "happy": 0.3}
    assert top_moods(probs, 3) == ["dark", "happy", "epic"]
    assert top_moods(probs, 10) == ["dark", "happy", "epic"]
    assert top_moods(dict.fromkeys(probs, 0.0), 3) == []
