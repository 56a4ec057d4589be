"""Caption metrics against numbers computed independently, fallbacks, floor and ceiling.

METEOR and the PTB tokenizer start Java processes, so one module-scoped
scorer serves every test here (METEOR's JVM takes seconds to start).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from collections import Counter

import pytest

from ptlib.metrics import (
    CaptionScorer,
    best_constant_caption,
    java_available,
    most_frequent_caption_baseline,
    reference_agreement,
    score_against_folds,
    score_captions,
    score_floor,
)
from ptlib.metrics import captions as captions_module

requires_java = pytest.mark.skipif(not java_available(), reason="METEOR / PTB need java on PATH")

# Plain lower-case text without punctuation: PTB and the Python rule both leave it as is.
REFERENCES = {
    1: ["a red circle left of a blue square", "the red circle is left of the square"],
    2: ["two green triangles above a circle", "two small green triangles"],
}
PREDICTIONS = {1: "a red circle left of the square", 2: "two green triangles"}

FIVE_REFERENCES = {
    10: [
        "a big red circle left of a blue square",
        "a red circle to the left of a square",
        "a large red circle and a small blue square",
        "red circle beside a blue square",
        "a red circle left of the blue square",
    ],
    11: [
        "two green triangles above a yellow circle",
        "two triangles over a circle",
        "a yellow circle below two green triangles",
        "two small green triangles and a circle",
        "green triangles above one yellow circle",
    ],
    12: [
        "one purple star in the middle",
        "a purple star in the centre",
        "a single purple star",
        "a star in the middle of the image",
        "one small purple star at the centre",
    ],
}


@pytest.fixture(scope="module")
def scorer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Java missing: tested separately
        active = CaptionScorer()
    yield active
    active.close()


# ---------------------------------------------------------------------------
# Independent implementations of the formulas
# ---------------------------------------------------------------------------


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def hand_corpus_bleu(references, predictions, max_n: int) -> float:
    """Corpus BLEU with clipped counts and the closest reference length (shorter on ties)."""
    correct, guessed = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for image_id, prediction in predictions.items():
        hyp = prediction.split()
        refs = [ref.split() for ref in references[image_id]]
        hyp_length += len(hyp)
        ref_length += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            best_in_refs = Counter()
            for ref in refs:
                best_in_refs |= ngrams(ref, n)  # element-wise max
            correct[n - 1] += sum(min(c, best_in_refs[g]) for g, c in ngrams(hyp, n).items())
            guessed[n - 1] += max(len(hyp) - n + 1, 0)
    log_precision = sum(math.log(correct[k] / guessed[k]) for k in range(max_n)) / max_n
    brevity = 1.0 if hyp_length >= ref_length else math.exp(1 - ref_length / hyp_length)
    return brevity * math.exp(log_precision)


def lcs_length(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


def hand_rouge_l(references, predictions, beta: float = 1.2) -> float:
    scores = []
    for image_id, prediction in predictions.items():
        hyp = prediction.split()
        lcs = [lcs_length(ref.split(), hyp) for ref in references[image_id]]
        precision = max(common / len(hyp) for common in lcs)
        recall = max(
            common / len(ref.split()) for common, ref in zip(lcs, references[image_id], strict=True)
        )
        scores.append((1 + beta**2) * precision * recall / (recall + beta**2 * precision))
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------
# Scores against independent numbers
# ---------------------------------------------------------------------------


def test_bleu_matches_clipped_counts_and_closest_length_brevity_penalty(scorer):
    result = scorer.score(REFERENCES, PREDICTIONS)
    # Closest reference lengths 8 and 4 against 7 + 3 words: brevity penalty exp(1 - 12/10).
    for n in range(1, 5):
        assert result[f"BLEU-{n}"] == pytest.approx(
            hand_corpus_bleu(REFERENCES, PREDICTIONS, n), rel=1e-6
        )
    # Every predicted word is in a reference: unigram precision 10/10, times the penalty.
    assert result["BLEU-1"] == pytest.approx(math.exp(-0.2), rel=1e-6)


def test_rouge_l_matches_an_independent_lcs(scorer):
    result = scorer.score(REFERENCES, PREDICTIONS)
    assert result["ROUGE-L"] == pytest.approx(hand_rouge_l(REFERENCES, PREDICTIONS), rel=1e-12)


def test_cider_d_on_a_hand_computed_tf_idf_case(scorer):
    # Two images, so IDF = log(2 / df): "a" is in both images' references and weighs 0;
    # every other reference n-gram is in one image only and weighs log 2.
    # Image 1 (exact copy): cosine 1 for n = 1, 2, 3 and no 4-grams -> 10 * 3/4 = 7.5.
    # Image 2: unigrams {green, square} vs {blue, square} -> cosine 1/2, no shared
    # bigram or trigram -> 10 * (1/2) / 4 = 1.25.  Corpus CIDEr-D = (7.5 + 1.25) / 2.
    result = scorer.score(
        {1: ["a red circle"], 2: ["a blue square"]}, {1: "a red circle", 2: "a green square"}
    )
    assert result["CIDEr-D"] == pytest.approx(4.375, rel=1e-9)


def test_cider_d_of_captions_identical_to_their_references_is_ten(scorer):
    # Disjoint vocabularies and at least 4 words, so every n-gram order has weight:
    # each cosine is 1, the length penalty exp(0) = 1, times 10.
    references = {1: ["a red circle left of a square"] * 2, 2: ["two green triangles over stars"]}
    predictions = {1: "a red circle left of a square", 2: "two green triangles over stars"}
    result = scorer.score(references, predictions)
    assert result["CIDEr-D"] == pytest.approx(10.0, rel=1e-9)
    assert result["BLEU-4"] == pytest.approx(1.0, rel=1e-6)
    assert result["ROUGE-L"] == pytest.approx(1.0)


@requires_java
def test_meteor_is_one_for_exact_matches_and_zero_for_empty_captions(scorer):
    exact = scorer.score(REFERENCES, {1: REFERENCES[1][0], 2: REFERENCES[2][1]})
    assert exact["METEOR"] == pytest.approx(1.0)
    partial = scorer.score(REFERENCES, PREDICTIONS)
    assert 0.0 < partial["METEOR"] < 1.0
    empty = scorer.score(REFERENCES, {1: "", 2: ""})
    assert empty["METEOR"] == 0.0


@requires_java
def test_ptb_tokenisation_lower_cases_and_drops_punctuation(scorer):
    assert scorer.tokenizer == "ptb"
    tokenized = scorer.tokenize({5: ["A Red circle, LEFT of the square.", "Two\nlines!"]})
    assert tokenized == {5: ["a red circle left of the square", "two lines"]}
    shouted = {1: "A RED CIRCLE, left of the square!", 2: "Two green triangles."}
    assert scorer.score(REFERENCES, shouted)["BLEU-4"] == pytest.approx(
        scorer.score(REFERENCES, PREDICTIONS)["BLEU-4"]
    )


def test_empty_predictions_are_scored_and_counted(scorer):
    result = scorer.score(REFERENCES, {1: "", 2: "..."})
    assert result["n_empty_predictions"] == 2
    assert result["n_images"] == 2
    assert result["BLEU-1"] < 1e-6
    assert result["ROUGE-L"] == 0.0
    assert result["CIDEr-D"] == 0.0


def test_references_of_images_without_predictions_are_ignored(scorer):
    more_references = REFERENCES | {3: ["a yellow star"]}
    assert scorer.score(more_references, PREDICTIONS) == scorer.score(REFERENCES, PREDICTIONS)


def test_spice_is_reported_unavailable_and_never_downloaded(scorer, monkeypatch):
    import urllib.request

    import pycocoevalcap.spice.get_stanford_models as spice_models

    def no_download(*args, **kwargs):
        raise AssertionError("SPICE tried to download Stanford CoreNLP")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_download)
    monkeypatch.setattr(spice_models, "urlretrieve", no_download)
    monkeypatch.setattr(captions_module, "_SPICE_CORENLP_JARS", ("no-such-corenlp.jar",))
    result = score_captions(REFERENCES, PREDICTIONS, metrics=("BLEU", "SPICE"))
    assert result["SPICE"] is None
    if java_available():
        assert "CoreNLP" in result["unavailable"]["SPICE"]
    else:  # checked before the CoreNLP jars: without Java, SPICE cannot run at all
        assert result["unavailable"]["SPICE"] == "java not found on PATH (SPICE runs in Java)"
    assert result["BLEU-2"] == pytest.approx(scorer.score(REFERENCES, PREDICTIONS)["BLEU-2"])
    assert "METEOR" not in result  # only the requested metrics


def test_spice_failure_is_reported_not_raised(monkeypatch):
    import pycocoevalcap.spice.spice as spice

    class BrokenSpice:
        def __init__(self):
            raise OSError("CoreNLP models are corrupt")

    monkeypatch.setattr(captions_module, "spice_unavailable_reason", lambda: None)
    monkeypatch.setattr(spice, "Spice", BrokenSpice)
    with pytest.warns(RuntimeWarning, match="SPICE failed"):
        result = score_captions(REFERENCES, PREDICTIONS, metrics=("ROUGE_L", "SPICE"))
    assert result["SPICE"] is None
    assert "corrupt" in result["unavailable"]["SPICE"]
    assert result["ROUGE-L"] > 0


def test_without_java_meteor_is_skipped_and_tokenisation_falls_back(scorer, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **k: None if cmd == "java" else real_which(cmd, *a, **k)
    )

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a subprocess was started without java: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    with pytest.warns(RuntimeWarning) as caught:
        fallback = CaptionScorer()
    messages = " ".join(str(w.message) for w in caught)
    assert "METEOR is skipped" in messages and "Python rule" in messages
    result = fallback.score(REFERENCES, PREDICTIONS)
    assert result["tokenizer"] == "python-fallback"
    assert result["METEOR"] is None and "java" in result["unavailable"]["METEOR"]
    assert result["SPICE"] is None and "java" in result["unavailable"]["SPICE"]
    assert fallback.tokenize({1: ["A Red circle, LEFT of it."]}) == {1: ["a red circle left of it"]}
    monkeypatch.undo()
    reference = scorer.score(REFERENCES, PREDICTIONS)
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"):
        assert result[key] == pytest.approx(reference[key], rel=1e-12), key


@pytest.mark.parametrize(
    ("references", "predictions", "error", "match"),
    [
        (
            REFERENCES,
            {1: "a circle", 9: "a square"},
            ValueError,
            "image id 9, which has no references",
        ),
        (REFERENCES, {1: 3}, TypeError, r"predictions\[1\] must be a caption string"),
        ({1: "a red circle"}, {1: "a circle"}, TypeError, r"references\[1\] must be a list"),
        ({1: []}, {1: "a circle"}, ValueError, r"references\[1\] is empty"),
        (REFERENCES, {}, ValueError, "nothing to score"),
    ],
)
def test_bad_input_gets_a_clear_error(scorer, references, predictions, error, match):
    with pytest.raises(error, match=match):
        scorer.score(references, predictions)


def test_unknown_metric_names_the_choices():
    with pytest.raises(ValueError, match="unknown metric 'BLEURT'.*CIDEr"):
        CaptionScorer(metrics=("BLEU", "BLEURT"))


# ---------------------------------------------------------------------------
# Floor and ceiling
# ---------------------------------------------------------------------------


def test_ceiling_is_the_maximum_when_all_references_agree(scorer):
    identical = {
        1: ["a big red circle left of a blue square"] * 5,
        2: ["two small green triangles above one circle"] * 5,
    }
    result = reference_agreement(identical, scorer=scorer)
    assert result["n_folds"] == 5 and len(result["per_fold"]) == 5
    for n in range(1, 5):
        assert result[f"BLEU-{n}"] == pytest.approx(1.0, rel=1e-6)
    assert result["ROUGE-L"] == pytest.approx(1.0)
    assert result["CIDEr-D"] == pytest.approx(10.0)
    if java_available():
        assert result["METEOR"] == pytest.approx(1.0)


def test_fold_scores_are_fold_by_fold_scores_averaged(scorer):
    ceiling = reference_agreement(FIVE_REFERENCES, scorer=scorer)
    predictions = {10: "a red circle left of a square", 11: "two triangles", 12: "a purple star"}
    model = score_against_folds(FIVE_REFERENCES, predictions, scorer=scorer)
    for fold in range(5):
        rest = {i: refs[:fold] + refs[fold + 1 :] for i, refs in FIVE_REFERENCES.items()}
        held_out = {i: refs[fold] for i, refs in FIVE_REFERENCES.items()}
        by_hand_ceiling = scorer.score_tokenized(rest, held_out)
        by_hand_model = scorer.score_tokenized(rest, predictions)
        for key in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"):
            assert ceiling["per_fold"][fold][key] == pytest.approx(by_hand_ceiling[key]), key
            assert model["per_fold"][fold][key] == pytest.approx(by_hand_model[key]), key
    for key in ("BLEU-1", "ROUGE-L", "CIDEr-D"):
        assert model[key] == pytest.approx(sum(f[key] for f in model["per_fold"]) / 5)


def test_images_with_fewer_references_than_folds_reuse_them_in_turn(scorer):
    references = {1: FIVE_REFERENCES[10][:3], 2: FIVE_REFERENCES[11][:3]}
    result = reference_agreement(references, scorer=scorer, metrics=("BLEU",))
    assert result["per_fold"][3] == result["per_fold"][0]
    assert result["per_fold"][4] == result["per_fold"][1]
    assert result["per_fold"][1] != result["per_fold"][0]


def test_fold_scoring_needs_two_references_per_image(scorer):
    references = {1: ["a red circle", "a circle"], 7: ["a lonely square"]}
    with pytest.raises(ValueError, match=r"references\[7\] has 1 reference"):
        reference_agreement(references, scorer=scorer)
    with pytest.raises(ValueError, match=r"references\[7\] has 1 reference"):
        score_against_folds(references, {7: "a square"}, scorer=scorer)


def test_most_frequent_caption_counts_after_tokenisation_and_breaks_ties_alphabetically():
    captions = ["Two squares.", "a red circle", "A red circle.", "two squares", "a star"]
    # "a red circle" and "two squares" both appear twice once tokenised: alphabetical wins.
    assert most_frequent_caption_baseline(captions) == "a red circle"
    assert most_frequent_caption_baseline(list(reversed(captions))) == "a red circle"
    assert most_frequent_caption_baseline({1: captions, 2: ["TWO squares!"]}) == "two squares"
    with pytest.raises(ValueError, match="no caption with a word"):
        most_frequent_caption_baseline(["...", ""])


def test_floor_is_the_baseline_caption_scored_on_the_same_folds(scorer):
    train = ["a red circle", "a red circle", "two triangles"]
    floor = score_floor(train, FIVE_REFERENCES, scorer=scorer)
    assert floor["caption"] == "a red circle"
    same = score_against_folds(
        FIVE_REFERENCES, dict.fromkeys(FIVE_REFERENCES, "a red circle"), scorer=scorer
    )
    for key in ("BLEU-1", "METEOR", "ROUGE-L", "CIDEr-D"):
        assert floor[key] == same[key]
    ceiling = reference_agreement(FIVE_REFERENCES, scorer=scorer)
    assert floor["CIDEr-D"] < ceiling["CIDEr-D"]


def test_best_constant_caption_breaks_a_frequency_tie_by_training_cider_not_the_alphabet():
    # Every image has one reference per template, so the five phrasings of "a red circle"
    # tie on count; the bare phrase is alphabetically first but shares the fewest n-grams
    # with the other references.
    templates = ["{}", "an image of {}", "a picture of {}", "there is {}",
                 "{} on a noisy background"]
    train = {i: [t.format(kind) for t in templates]
             for i, kind in enumerate(["a red circle"] * 4 + ["a blue square"] * 3)}
    assert most_frequent_caption_baseline(train) == "a picture of a red circle"
    choice = best_constant_caption(train, top_k=1)
    counts = {c["caption"]: c["count"] for c in choice["candidates"]}
    assert counts == {t.format("a red circle"): 4 for t in templates}  # the tie, all kept
    ciders = [c["train_cider"] for c in choice["candidates"]]
    assert ciders == sorted(ciders, reverse=True) and ciders[0] > ciders[-1]
    assert choice["caption"] == choice["candidates"][0]["caption"]
    assert choice["caption"] != "a red circle"
    wider = best_constant_caption(train, top_k=2)
    assert len(wider["candidates"]) == 10
    assert best_constant_caption(train, top_k=1, max_images=2)["rule"].endswith("2 training images")
    with pytest.raises(TypeError, match="must map training image id"):
        best_constant_caption(["a red circle"])
    with pytest.raises(ValueError, match="top_k"):
        best_constant_caption(train, top_k=0)


def test_floor_model_ceiling_uses_the_best_constant_caption():
    from ptlib.train.evaluate import floor_model_ceiling

    train = {1: ["a red circle", "an image of a red circle"],
             2: ["a red circle", "an image of a red circle"]}
    predictions = {i: refs[0] for i, refs in FIVE_REFERENCES.items()}
    folds = floor_model_ceiling(predictions, FIVE_REFERENCES, train, metrics=("CIDEr",))
    assert folds["floor"]["caption"] == best_constant_caption(train)["caption"]
    assert {c["caption"] for c in folds["floor"]["choice"]["candidates"]} == set(train[1])
    with pytest.raises(TypeError, match="train_references must map"):
        floor_model_ceiling(predictions, FIVE_REFERENCES, train[1], metrics=("CIDEr",))
