"""SAFER-style certification of text classifiers (random word substitutions, Ye et al. 2020).

The candidate sets are injected (no WordNet) except in the CLI test, so every certified word count
below can be worked out by hand from Δ(r) = 1 - (product of the r smallest q*), q = |S ∩ S'| / max(|S|, |S'|),
certified while Δ < pA - 1/2.
"""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from robustkit.evaluation import certify_substitutions
from robustkit.evaluation.stats import clopper_pearson_lower

from _text_fixtures import KeywordModel

# Symmetric clusters: every member's set is the whole cluster, so a substitution leaves Π(x) unchanged (q = 1).
CLUSTERS = {"nice": ["good", "fine"], "good": ["nice", "fine"], "fine": ["nice", "good"],
            "movie": ["film"], "film": ["movie"]}
# Asymmetric sets (the hand-checked cases): S(still) = {still, calm}, S(calm) = {calm, still, quiet} -> q = 2/3.
# S(dull) = {dull, bad, slow}; S(bad) = {bad} -> q = 1/3, S(slow) = {slow, dull} -> q = 2/3; q*(dull) = 1/3.
# S(grim) = {grim, bad}: half of the draws contain "bad".
# S(calmly) = {calmly, mild}, S(mild) = {mild, calmly, bad, awful, poor, dire}: q = 2/6 (SAFER's c/|S(x_j)| says 1).
ASYMMETRIC = {"still": ["calm"], "calm": ["still", "quiet"], "dull": ["bad", "slow"], "slow": ["dull"],
              "grim": ["bad"], "calmly": ["mild"], "mild": ["calmly", "bad", "awful", "poor", "dire"]}
CANDS = {**CLUSTERS, **ASYMMETRIC}
NEGATIVE_WORDS = {"bad", "awful", "poor", "dire"}


def cands(word):
    return CANDS.get(word.lower(), [])


class ConstantModel(torch.nn.Module):
    """Ignores its input: class 1, whatever the text."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.2, 1.0]))

    def encode(self, texts, device=None):
        return {"n": torch.zeros(len(texts))}

    def forward(self, inputs):
        return self.bias.expand(inputs["n"].shape[0], 2)


class NegativeWordsModel(KeywordModel):
    """Negative (0) when a text holds any of NEGATIVE_WORDS."""

    def encode(self, texts, device=None):
        return {"bad": torch.tensor([float(bool(NEGATIVE_WORDS & set(t.split()))) for t in texts])}


def _set(word):
    return [word] + [c for c in cands(word) if c != word] if word.isalpha() and len(word) > 1 else [word]


def _exact_p_negative(text):
    """P_{z~Π(x)}(f(z) = 0) for NegativeWordsModel, in closed form: 1 - Π_j P(z_j is not negative)."""
    p_clean = 1.0
    for w in text.split():
        s = _set(w)
        p_clean *= 1 - sum(v in NEGATIVE_WORDS for v in s) / len(s)
    return 1 - p_clean


def _neighbours(text, r):
    """Every text that replaces at most r words by members of their sets."""
    words = text.split()
    for k in range(1, r + 1):
        for pos in itertools.combinations(range(len(words)), k):
            for subs in itertools.product(*[_set(words[j])[1:] for j in pos]):
                out = list(words)
                for j, v in zip(pos, subs):
                    out[j] = v
                yield " ".join(out)


def test_constant_model_is_certified_everywhere_with_symmetric_sets():
    texts = ["nice movie", "the good film was fine", "a ||| b", "Nice FILM"]
    out = certify_substitutions(ConstantModel(), texts, [1, 1, 0, 1], n0=10, n=100, alpha=0.001, candidates=cands)
    bound = clopper_pearson_lower(100, 100, 0.001)
    assert out["p_a_lower"] == pytest.approx([bound] * 4, abs=1e-6) and bound == pytest.approx(0.001 ** (1 / 100))
    assert out["prediction"] == [1, 1, 1, 1] and out["abstain_rate"]["value"] == 0
    assert out["certified_words"] == out["n_words"] == [2, 5, 3, 2]  # Δ = 0: every substitution at once
    assert out["certified_share"] == [1.0] * 4 and out["mean_certified_share"] == 1.0  # stability, right or wrong
    assert [a["value"] for a in out["certified_accuracy"]] == [0.75] * 4
    assert out["changeable_words"] == [2, 3, 0, 2]  # "the", "was", "|||" never change; case is matched
    for a in out["certified_accuracy"]:
        assert a["ci95"][0] < 0.75 < a["ci95"][1]


def test_delta_arithmetic_by_hand_on_two_words():
    m = ConstantModel()
    # q*(film) = 1 (cluster), q*(still) = 2/3: Δ(1) = 1/3 < pA - 1/2 = 0.433 -> both words may change.
    # "still calm": q*(calm) = min(2/3 via "still", 1/3 via "quiet", whose set is {quiet}) = 1/3.
    out = certify_substitutions(m, ["film still", "still still", "still calm", "calmly film"], [1] * 4, n0=5, n=100,
                                candidates=cands, shares=(0, 0.05, 0.5, 1.0))
    margin = 0.001 ** (1 / 100) - 0.5
    assert 1 / 3 < margin < 1 - (2 / 3) ** 2  # the numbers the expectations below rest on
    assert out["certified_words"] == [2, 1, 0, 0]
    # "still still": Δ(1) = 1/3 certified, Δ(2) = 5/9 > 0.433 not; "calmly": q = 2/6 -> Δ = 2/3.
    assert out["certified_share"] == [1.0, 0.5, 0.0, 0.0]
    # budget(2, s) = 0, 1, 1, 2 words for s = 0, 0.05, 0.5, 1.0
    assert [a["k"] for a in out["certified_accuracy"]] == [4, 2, 2, 1]


def test_keyword_model_certificates_are_sound_and_abstain_where_theory_says():
    model = NegativeWordsModel()
    texts = ["nice movie", "bad movie", "dull film", "grim film", "calmly film", "good film"]
    labels = [1, 0, 1, 1, 1, 1]
    out = certify_substitutions(model, texts, labels, n0=20, n=400, alpha=0.001, candidates=cands,
                                shares=(0, 0.5, 1.0))
    exact = [1 - _exact_p_negative(t) for t in texts]  # P(positive) under Π(x)
    assert exact == pytest.approx([1, 0, 2 / 3, 1 / 2, 1, 1])
    pred, r = out["prediction"], out["certified_words"]
    assert pred == [1, 0, 1, -1, 1, 1]
    assert out["abstain_rate"]["k"] == 1 and r[3] == -1 and out["certified_share"][3] is None  # grim: p = 1/2
    # A word that can become "bad" cannot be certified: dull (q* = 1/3) and calmly (q* = 1/3, where
    # SAFER's |S(x) ∩ S(x')| / |S(x)| would give 1 and certify a sentence that "mild film" flips).
    assert r == [2, 2, 0, -1, 0, 2]
    assert out["p_a_lower"][0] == pytest.approx(0.001 ** (1 / 400), abs=1e-6)
    assert 0.5 < out["p_a_lower"][2] < 2 / 3
    # Soundness: every text within R substitutions keeps the smoothed prediction (exact probabilities).
    flips = {"dull film": "bad film", "calmly film": "mild film"}
    for text, c, words in zip(texts, pred, r):
        if c < 0:
            continue
        for other in _neighbours(text, min(words, len(text.split()))):
            p_c = 1 - _exact_p_negative(other) if c == 1 else _exact_p_negative(other)
            assert p_c > 0.5, (text, other)
        if text in flips:  # the certificate stopped exactly where an attack exists
            assert _exact_p_negative(flips[text]) > 0.5
    assert [a["k"] for a in out["certified_accuracy"]] == [5, 3, 3]  # grim abstains; budget(2, s) = 0, 1, 2
    assert out["smoothed_accuracy"]["k"] in (5, 6)  # grim's plug-in majority is a coin flip; the others are right


def test_seeded_and_independent_of_batching():
    model = NegativeWordsModel()
    texts = ["grim film", "dull movie", "grim dull film", "nice film"]
    a = certify_substitutions(model, texts, [1, 1, 1, 1], n0=10, n=60, candidates=cands, seed=3)
    b = certify_substitutions(model, texts, [1, 1, 1, 1], n0=10, n=60, candidates=cands, seed=3, batch_size=1)
    head = certify_substitutions(model, texts[:2], [1, 1], n0=10, n=60, candidates=cands, seed=3)
    for key in ("prediction", "p_a_lower", "certified_words", "certified_accuracy", "queries"):
        assert a[key] == b[key], key
    # a sentence's draws depend on (seed, its index) only: a shorter --limit gives the same first results
    for key in ("prediction", "p_a_lower", "certified_words"):
        assert head[key] == a[key][:2], key
    other = certify_substitutions(model, texts, [1, 1, 1, 1], n0=10, n=60, candidates=cands, seed=4)
    assert other["p_a_lower"] != a["p_a_lower"]
    assert a["queries"] < 4 * 70  # identical draws are queried once


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n0": 0}, ValueError, "'n0' parameter of certify_substitutions must be an integer >= 1"),
    ({"n": 2.5}, TypeError, "'n' parameter of certify_substitutions must be an integer"),
    ({"alpha": 0.0}, ValueError, "'alpha' parameter of certify_substitutions"),
    ({"alpha": 0.7}, ValueError, "'alpha' parameter of certify_substitutions"),
    ({"shares": [0.1, 1.5]}, ValueError, "'shares' parameter of certify_substitutions"),
    ({"shares": "0.1"}, TypeError, "'shares' parameter of certify_substitutions"),
    ({"max_candidates": 0}, ValueError, "'max_candidates' parameter"),
    ({"candidates": {"good": ["nice"]}}, TypeError, "'candidates' parameter of certify_substitutions must be a "
                                                    "callable"),
    ({"candidates": lambda w: "nice"}, TypeError, "must map a word to a list of strings"),
    ({"candidates": lambda w: ["very nice"]}, ValueError, "single words"),
    ({"texts": ["good film", "  "]}, ValueError, "'texts' parameter .* non-empty strings. Got '  ' at index 1"),
    ({"texts": "good film"}, TypeError, "'texts' parameter of certify_substitutions must be a list of strings"),
    ({"texts": []}, ValueError, "'texts' parameter .* at least one text"),
    ({"labels": torch.tensor([1, 0, 1])}, ValueError, r"'labels' parameter .* shape \(2,\).*Got shape \(3,\)"),
    ({"labels": torch.tensor([1.0, 0.0])}, TypeError, "'labels' parameter .* integer class indices"),
])
def test_bad_input_names_the_argument(kwargs, error, match):
    args = {"texts": ["good film", "bad film"], "labels": [1, 0], "candidates": cands, "n0": 2, "n": 4, **kwargs}
    texts, labels = args.pop("texts"), args.pop("labels")
    with pytest.raises(error, match=match):
        certify_substitutions(KeywordModel(), texts, labels, **args)


def test_max_candidates_caps_the_sets():
    # With one candidate, S(mild) = {mild, calmly}: "calmly" and "mild" form a cluster, so q = 1.
    out = certify_substitutions(ConstantModel(), ["calmly film"], [1], n0=5, n=100, candidates=cands,
                                max_candidates=1)
    assert out["certified_words"] == [2] and out["max_candidates"] == 1


def test_cli_certifies_a_text_run(tmp_path):
    pytest.importorskip("transformers")
    from robustkit.checkpoint import save_model
    from robustkit.cli import app
    from robustkit.data import load_dataset
    from robustkit.data.wordnet import find_wordnet
    from _text_fixtures import make_tiny_model, write_synthetic_csv
    if find_wordnet() is None:
        pytest.skip("WordNet database not installed (apt-get install wordnet-base)")
    data = write_synthetic_csv(tmp_path / "data", (("train", 8, 0), ("dev", 6, 1)))
    ds = load_dataset("csv", data_dir=str(data))
    run = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save_model(run / "best.safetensors", make_tiny_model(tmp_path / "tok"), data=ds.spec())
        runner = CliRunner()
        res = runner.invoke(app, ["certify", str(run), "--data-dir", str(data), "--limit", "3", "--n0", "4", "--n",
                                  "16", "--shares", "0,0.1,0.2", "--max-candidates", "5", "--json"], env={"CI": "1"})
        assert res.exit_code == 0, res.output
        doc = json.loads((run / "certify.json").read_text())
        assert doc == json.loads(res.stdout)
        assert doc["certificate"] == "safer" and doc["num_samples"] == 3 and doc["shares"] == [0, 0.1, 0.2]
        assert (doc["n0"], doc["n"], doc["alpha"], doc["max_candidates"]) == (4, 16, 0.001, 5)
        for key in ("prediction", "p_a_lower", "certified_words", "certified_share", "n_words"):
            assert len(doc[key]) == 3, key
        assert len(doc["certified_accuracy"]) == 3 and doc["abstain_rate"]["ci95"] and doc["checkpoint"]["sha256"]
        assert doc["candidates"] == "wordnet" and doc["queries"] <= 3 * 20 and doc["seconds"] >= 0
        acc = [a["value"] for a in doc["certified_accuracy"]]
        assert acc == sorted(acc, reverse=True) and not math.isnan(doc["mean_certified_share"])
        md = (run / "certify.md").read_text()
        assert "| word-share budget | certified accuracy (95% CI) |" in md and "abstain rate" in md
        # an image-only option on text data is refused, naming it
        res = runner.invoke(app, ["certify", str(run), "--data-dir", str(data), "--sigma", "0.5"], env={"CI": "1"})
        assert res.exit_code != 0 and "'sigma' option does not apply to text data" in res.output
    finally:
        torch.set_num_threads(before)
