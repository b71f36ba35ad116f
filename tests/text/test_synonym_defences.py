"""Issue 16: lemma-based synonym candidates, the beam word attack, and the synonym-threat training objectives
(ASCC/DNE hull adversary, worst-of-k random substitution)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustkit.attacks.word_substitution import GreedyAttack, WordSubstitutionAttack
from robustkit.data.wordnet import find_wordnet
from robustkit.training.objectives import create_objective
from robustkit.training.objectives.ascc import _HullVocabulary

from _text_fixtures import synthetic_sentences

HAS_WORDNET = find_wordnet() is not None
try:
    import lemminflect  # noqa: F401
    HAS_LEMMINFLECT = True
except ModuleNotFoundError:
    HAS_LEMMINFLECT = False


# -- candidates -----------------------------------------------------------------------------------
@pytest.mark.skipif(not (HAS_WORDNET and HAS_LEMMINFLECT), reason="needs WordNet (wordnet-base) and lemminflect")
def test_inflected_words_get_synonyms_in_their_own_form():
    from robustkit.attacks.discrete import STOP_WORDS
    from robustkit.data.synonyms import SynonymCandidates
    lemma = SynonymCandidates(stop_words=STOP_WORDS)
    exact = SynonymCandidates(stop_words=STOP_WORDS, inflect=False)
    # WordNet indexes "lack", "film", "seem": looked up by the exact form these inflections get nothing.
    assert exact("lacks") == [] and exact("seems") == []
    assert "misses" in lemma("lacks") and "miss" not in lemma("lacks")
    assert "movies" in lemma("films") and "movie" not in lemma("films")
    assert "appears" in lemma("seems")
    # comparatives keep dictionary forms only (no "amusingest"), base forms come back as they are
    assert "oddest" in lemma("funniest") and "amusingest" not in lemma("funniest")
    assert "film" in lemma("movie")
    assert all(w not in STOP_WORDS and w.isalpha() for w in lemma("good"))


# -- the beam search --------------------------------------------------------------------------------
class _PairModel(torch.nn.Module):
    """Positive unless both "mediocre" and "poor" appear (an interaction greedy search cannot see coming):
    each word also has a small additive weight, so the greedy choice at the first word is "nice"."""

    num_classes = 2
    weights = {"nice": -0.5, "mediocre": -0.1, "poor": -0.2, "ok": -0.1}

    def predict_proba(self, texts, batch_size=64):
        self.calls = getattr(self, "calls", 0) + len(texts)
        out = []
        for t in texts:
            w = t.split()
            score = 2.0 + sum(self.weights.get(x, 0.0) for x in w) - (10.0 if "mediocre" in w and "poor" in w else 0)
            p = 1 / (1 + math.exp(-score))
            out.append([1 - p, p])
        return torch.tensor(out)


class _DictAttack(GreedyAttack):
    name = "dict-test"
    table = {"good": ["nice", "mediocre"], "fine": ["poor", "ok"]}

    def candidates(self, word, state=None):
        return list(self.table.get(word, []))


def test_beam_finds_what_greedy_misses_and_queries_are_counted_once():
    text, model = ["good fine movie here"], _PairModel()
    greedy = _DictAttack(max_share=0.5, beam_width=1).attack(model, text, [1])[0]
    beam = _DictAttack(max_share=0.5, beam_width=2).attack(model, text, [1])[0]
    assert not greedy.success and [c[2] for c in greedy.changed] == ["nice", "poor"]
    assert beam.success and sorted(c[2] for c in beam.changed) == ["mediocre", "poor"]
    assert beam.adversarial.split()[:2] in (["mediocre", "poor"],)
    # every distinct text the search asked about counts once: original, 2 deletions, 2 first-word
    # candidates, then 2 candidates for each of the 2 kept hypotheses
    assert beam.queries == 1 + 2 + 2 + 4
    assert greedy.queries == 1 + 2 + 2 + 2


def test_pwws_ranking_visits_the_word_whose_best_substitute_hurts_most_first():
    class Model(_PairModel):
        weights = {"dire": -3.0, "meh": -0.2}

    class Atk(_DictAttack):
        table = {"good": ["meh"], "fine": ["dire"]}

    r = Atk(max_share=0.25, importance="pwws").attack(Model(), ["good fine movie here"], [1])[0]
    # budget 1 word: PWWS ranking (saliency x best substitute drop) picks "fine" -> "dire" and flips
    assert r.success and r.changed == [[1, "fine", "dire"]]


def test_rerank_spends_the_word_budget_on_the_substitute_that_hurts_most():
    class Model(_PairModel):
        # deleting "good" costs most, but its only substitute barely matters; "fine" -> "dire" flips
        weights = {"good": 3.0, "meh": -0.2, "dire": -6.0}

    class Atk(_DictAttack):
        table = {"good": ["meh"], "fine": ["dire"]}

    text = ["good fine movie here"]
    plain = Atk(max_share=0.25, importance="deletion").attack(Model(), text, [1])[0]
    rerank = Atk(max_share=0.25, importance="deletion", rerank=2).attack(Model(), text, [1])[0]
    # budget 1 word: deletion order visits "good" first and spends the budget on "meh"
    assert not plain.success and plain.changed == [[0, "good", "meh"]]
    assert rerank.success and rerank.changed == [[1, "fine", "dire"]]
    # original, 2 deletions, 2 single substitutions (the search's step finds "fine dire" cached)
    assert rerank.queries == 1 + 2 + 2
    with pytest.raises(ValueError, match="rerank"):
        Atk(rerank=-1)


def test_taylor_gains_are_the_first_order_loss_change_of_each_substitution(trained_tiny):
    from robustkit.attacks.word_substitution import substitution_gains
    model = trained_tiny.eval()
    words, label = "the film was great fun".split(), 1
    vocab = [w for w in model.tokenizer.get_vocab() if w.isalpha() and len(w) > 2][:40]
    subs = {3: [words[3], *vocab[:5]]}
    gains = substitution_gains(model, [words], [label], [subs])[0][3]
    assert gains[0] == pytest.approx(0.0, abs=1e-6)  # the word itself changes nothing
    # the same directional derivative by autograd, for each single-piece candidate
    enc = model.encode([" ".join(words)])
    emb = model.embed(enc["input_ids"]).detach().requires_grad_(True)
    loss = F.cross_entropy(model.forward_embeds(emb, enc["attention_mask"]), torch.tensor([label]))
    (g,) = torch.autograd.grad(loss, emb)
    pos = [t for t, w in enumerate(model.tokenizer([words], is_split_into_words=True).word_ids(0)) if w == 3]
    table = model.embedding_layer().weight.detach()
    checked = 0
    for c, got in zip(subs[3][1:], gains[1:]):
        ids = model.tokenizer(c, add_special_tokens=False)["input_ids"]
        if len(ids) == len(pos) == 1:
            want = float((table[ids[0]] - emb[0, pos[0]].detach()) @ g[0, pos[0]])
            assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
            checked += 1
    assert checked >= 3
    with pytest.raises(ValueError, match="'subs' and 'labels'.*one entry per text of 'words' \\(1\\)"):
        substitution_gains(model, [words], [label], [subs, subs])


def test_taylor_ranked_attack_respects_constraints(trained_tiny):
    from _text_fixtures import BagEncoder
    from robustkit.attacks.discrete import check_constraints
    texts, labels = synthetic_sentences(16, seed=3)
    kw = dict(candidates="embedding", min_embedding_cos=0.0, max_share=0.2, min_similarity=0.5, encoder=BagEncoder())
    results = WordSubstitutionAttack(importance="taylor", rerank=3, **kw).attack(trained_tiny, texts, labels)
    assert any(r.success for r in results)
    for r in results:
        assert check_constraints(r, max_share=0.2, min_similarity=0.5) == []


def test_word_attack_beam_respects_constraints_on_a_trained_model(trained_tiny):
    from _text_fixtures import BagEncoder
    from robustkit.attacks.discrete import check_constraints
    texts, labels = synthetic_sentences(16, seed=3)
    kw = dict(candidates="embedding", min_embedding_cos=0.0, max_share=0.2, min_similarity=0.5, encoder=BagEncoder())
    greedy = WordSubstitutionAttack(importance="gradient", **kw).attack(trained_tiny, texts, labels)
    beam = WordSubstitutionAttack(importance="gradient", beam_width=4, **kw).attack(trained_tiny, texts, labels)
    assert sum(r.success for r in beam) >= sum(r.success for r in greedy)
    for r in beam:
        assert check_constraints(r, max_share=0.2, min_similarity=0.5) == []
    with pytest.raises(ValueError, match="beam_width"):
        WordSubstitutionAttack(candidates="embedding", beam_width=0)


# -- training objectives ----------------------------------------------------------------------------
TABLE = {"good": ["great", "fine", "nice"], "bad": ["awful", "poor"], "movie": ["film", "pic", "flick"],
         "boring": ["dull", "tedious"], "excellent": ["superb", "brilliant"]}


def _hull_objective(model, name, **kw):
    obj = create_objective(name, None, seed=0, **kw)
    obj._hull_vocab = _HullVocabulary(model.tokenizer, lambda w: TABLE.get(w.lower(), []), obj.max_candidates)
    return obj


def _text_batch(model, texts, labels):
    x = model.encode(texts)
    x["texts"] = texts
    return x, torch.tensor(labels)


@pytest.mark.parametrize("name", ["ascc", "dne"])
def test_hull_objectives_train_and_their_adversary_raises_the_loss(trained_tiny, name):
    texts = ["the movie was good", "the film was bad and boring", "it was excellent"]
    x, y = _text_batch(trained_tiny, texts, [1, 0, 1])
    obj = _hull_objective(trained_tiny, name)
    inputs, verts, mask = obj.hull(trained_tiny, texts, y.device)
    # slot 0 is the token itself; the hull of "movie" holds its three in-vocabulary synonyms
    vocab = trained_tiny.tokenizer.get_vocab()
    b, t = 0, 2  # [CLS] the movie ...
    assert int(inputs["input_ids"][b, t]) == vocab["movie"]
    assert sorted(verts[b, t][mask[b, t]].tolist()) == sorted(vocab[w] for w in ["movie", "film", "pic", "flick"])
    assert int(mask[0, 1].sum()) == 1  # "the": a stop word, no hull
    with pytest.raises(ValueError, match="raw texts"):
        obj(trained_tiny, {k: v for k, v in x.items() if k != "texts"}, y)
    trained_tiny.train()
    try:
        loss, stats = obj(trained_tiny, x, y)
        loss.backward()
        # the ascent raises KL(clean || hull point) above the start point's
        zero = _hull_objective(trained_tiny, name, steps=0, beta=1.0, loss="kl")
        many = _hull_objective(trained_tiny, name, steps=5, beta=1.0, loss="kl")
        clean = F.cross_entropy(trained_tiny(trained_tiny.encode(texts)), y)
        at_start = zero(trained_tiny, x, y)[0] - clean
        after = many(trained_tiny, x, y)[0] - clean
    finally:
        trained_tiny.eval()
        trained_tiny.zero_grad()
    assert torch.isfinite(loss) and stats["hull_words"] > 0 and stats["mean_vertices"] > 1
    assert float(after) > float(at_start)


def test_dne_start_is_seeded():
    obj = create_objective("dne", None, seed=3)
    mask = torch.ones(2, 4, 3, dtype=torch.bool)
    a = obj._init_logits(mask)
    obj2 = create_objective("dne", None, seed=3)
    assert torch.equal(a, obj2._init_logits(mask))
    assert not torch.equal(a, obj._init_logits(mask))  # a new batch, a new start
    assert torch.equal(create_objective("ascc", None)._init_logits(mask), torch.zeros(2, 4, 3))


def test_random_substitution_trains_on_the_worst_variant(trained_tiny, monkeypatch):
    from robustkit.training.objectives import random_sub
    texts, labels = synthetic_sentences(8, seed=2)
    x, y = _text_batch(trained_tiny, texts, labels)
    obj = create_objective("random-sub", None, seed=0, samples=3, rate=1.0)
    monkeypatch.setattr(obj, "_candidates", lambda: (lambda w: TABLE.get(w.lower(), [])))
    variants = obj.variants(texts, seed=1)
    assert len(variants) == 3 and all(len(v) == len(texts) for v in variants)
    for v in variants:
        for orig, new in zip(texts, v):
            for a, b in zip(orig.split(), new.split()):
                assert a == b or b in TABLE[a]
    assert obj.variants(texts, seed=1) == variants and obj.variants(texts, seed=2) != variants
    # the variant trained on is the one with the highest loss per text
    picked = {}
    real_encode = trained_tiny.encode

    def spy(batch_texts, device=None):
        picked.setdefault("calls", []).append(list(batch_texts))
        return real_encode(batch_texts, device=device)
    monkeypatch.setattr(trained_tiny, "encode", spy)
    trained_tiny.train()
    try:
        loss, stats = obj(trained_tiny, x, y)
    finally:
        trained_tiny.eval()
    scored, chosen = picked["calls"][:3], picked["calls"][3]
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(trained_tiny(real_encode(v)), y, reduction="none") for v in scored])
    assert chosen == [scored[k][i] for i, k in enumerate(losses.argmax(0).tolist())]
    assert torch.isfinite(loss) and 0 <= stats["changed"] <= 1
    with pytest.raises(ValueError, match="'rate' parameter"):
        create_objective("random-sub", None, rate=0.0)


def test_guided_variants_follow_the_taylor_gains_within_the_word_budget(trained_tiny, monkeypatch):
    from robustkit.attacks.word_substitution import substitution_gains
    texts, labels = synthetic_sentences(8, seed=4)
    obj = create_objective("random-sub", None, seed=0, samples=4, guide="taylor", max_share=0.2)
    monkeypatch.setattr(obj, "_candidates", lambda: (lambda w: TABLE.get(w.lower(), [])))
    variants = obj.guided_variants(trained_tiny, texts, labels, seed=1)
    assert len(variants) == 4 and all(len(v) == len(texts) for v in variants)
    changed_any = False
    for v in variants:
        for orig, new in zip(texts, v):
            a, b = orig.split(), new.split()
            diff = [(p, q) for p, q in zip(a, b) if p != q]
            assert len(a) == len(b) and len(diff) <= max(1, int(0.2 * len(a)))  # the attack's own budget
            assert all(q.lower() in TABLE[p.lower()] for p, q in diff)
            changed_any |= bool(diff)
    assert changed_any
    # variant 0 is noise-free: per text, the positions whose best candidate has the largest estimated gain
    words = [t.split() for t in texts]
    subs = [{i: TABLE[w.lower()] for i, w in enumerate(ws) if w.lower() in TABLE} for ws in words]
    gains = substitution_gains(trained_tiny, words, labels, subs)
    for ws, sb, gn, got in zip(words, subs, gains, variants[0]):
        best = sorted(((max(gn[i]), i, sb[i][gn[i].index(max(gn[i]))]) for i in gn), reverse=True)
        want = list(ws)
        for _, i, c in best[: max(1, int(0.2 * len(ws)))]:
            want[i] = c
        assert got.lower() == " ".join(want).lower()
    assert obj.guided_variants(trained_tiny, texts, labels, seed=1) == variants
    assert obj.guided_variants(trained_tiny, texts, labels, seed=2)[1:] != variants[1:]


def test_random_substitution_kl_loss_is_trades_form(trained_tiny, monkeypatch):
    texts, labels = synthetic_sentences(8, seed=2)
    x, y = _text_batch(trained_tiny, texts, labels)
    obj = create_objective("random-sub", None, seed=0, samples=3, rate=1.0, loss="kl", lam=3.0)
    monkeypatch.setattr(obj, "_candidates", lambda: (lambda w: TABLE.get(w.lower(), [])))
    picked = []
    real_encode = trained_tiny.encode

    def spy(batch_texts, device=None):
        picked.append(list(batch_texts))
        return real_encode(batch_texts, device=device)
    monkeypatch.setattr(trained_tiny, "encode", spy)
    loss, _ = obj(trained_tiny, x, y)  # eval mode throughout: no dropout, so the loss can be recomputed
    scored, chosen = picked[:3], picked[3]
    with torch.no_grad():
        logp = F.log_softmax(trained_tiny(real_encode(texts)), -1)
        kls = torch.stack([(logp.exp() * (logp - F.log_softmax(trained_tiny(real_encode(v)), -1))).sum(-1)
                           for v in scored])
        assert chosen == [scored[k][i] for i, k in enumerate(kls.argmax(0).tolist())]  # the largest KL, not CE
        lq = F.log_softmax(trained_tiny(real_encode(chosen)), -1)
        want = F.cross_entropy(logp, y) + 3.0 * (logp.exp() * (logp - lq)).sum(-1).mean()
    assert torch.allclose(loss.detach(), want, atol=1e-5)
    for bad, match in [({"guide": "hotflip"}, "'guide' parameter"), ({"loss": "mse"}, "'loss' parameter"),
                       ({"max_share": 0}, "'max_share' parameter")]:
        with pytest.raises(ValueError, match=match):
            create_objective("random-sub", None, **bad)


# -- synonym encoding ------------------------------------------------------------------------------------------------
def test_synonym_encoding_maps_a_cluster_to_one_word_and_keeps_positions():
    from robustkit.data.synonyms import SynonymEncoding
    enc = SynonymEncoding(["movie", "film", "good", "the", "flick"], lambda w: TABLE.get(w, []))
    # "movie" comes first: it represents itself and its candidates; "film" was taken, so it adds nothing
    assert enc("The Film was good , a flick") == "The Movie was good , a movie"
    assert enc("the movie was great") == "the movie was good"
    assert enc(enc("a nice pic")) == enc("a nice pic")  # representatives map to themselves
    assert enc.word("the") == "the" and enc.word("|||") == "|||"  # stop words and non-words never change


@pytest.mark.skipif(not HAS_WORDNET, reason="needs WordNet (wordnet-base)")
def test_synonym_encoded_model_sees_substitutes_as_the_original_and_survives_a_checkpoint(tmp_path):
    from _text_fixtures import make_tiny_model
    from robustkit.checkpoint import load_model, save_model
    model = make_tiny_model(tmp_path / "tok")
    model.set_synonym_encoding(True)
    rep = model.word_map.word("movie")
    syn = next(c for c, r in model.word_map.table.items() if r == rep and c != rep)
    a = model.encode([f"the {rep} was good"])["input_ids"]
    assert torch.equal(a, model.encode([f"the {syn} was good"])["input_ids"])
    batch, word_ids = model.encode_words([["the", syn, "was", "good"]])
    assert torch.equal(batch["input_ids"], a) and word_ids[0][2] == 1
    path = save_model(tmp_path / "m.safetensors", model, data={"name": "csv"})
    loaded, _ = load_model(path)
    assert loaded.word_map is not None and torch.equal(loaded.encode([f"the {syn} was good"])["input_ids"], a)


# -- rare-word map ---------------------------------------------------------------------------------------------------
def test_rare_word_map_reads_unseen_words_as_their_most_used_synonym():
    from robustkit.data.synonyms import RareWordMap
    table = {"flick": ["movie", "film"], "superb": ["great", "excellent"], "pic": ["photo"], "great": ["superb"]}
    words = RareWordMap.from_texts(["The movie was great", "a great film , a film", "the movie"],
                                   lambda w: table.get(w, []), min_count=2)
    assert words.counts == {"the": 2, "movie": 2, "great": 2, "film": 2, "a": 2}  # once-seen words are not targets
    assert words("a Flick was superb") == "a Movie was great"  # ties (movie, film) go to the earlier candidate
    assert words("the movie was great") == "the movie was great"  # seen words keep themselves
    assert words.word("pic") == "pic"  # no seen candidate: unchanged
    assert words.word("SUPERB") == "GREAT" and words.word("|||") == "|||"
    again = RareWordMap(words.to_spec()["counts"], lambda w: table.get(w, []), words.to_spec()["min_count"])
    assert again("a flick was superb") == words("a flick was superb")
    with pytest.raises(ValueError, match="'min_count' parameter"):
        RareWordMap({}, lambda w: [], min_count=0)
    from robustkit.data.synonyms import rare_word_map_from_spec
    for bad in ("counts", {"min_count": 2}, {"counts": ["film"]}):  # a damaged checkpoint spec: a clear error
        with pytest.raises(ValueError, match="rare-word map spec must be a mapping with 'min_count' and 'counts'"):
            rare_word_map_from_spec(bad)
    with pytest.raises(ValueError, match="integer counts. Got 'film': '3'"):
        RareWordMap({"film": "3"}, lambda w: [], min_count=2)


@pytest.mark.skipif(not HAS_WORDNET, reason="needs WordNet (wordnet-base)")
def test_rare_word_run_stores_its_map_in_the_checkpoint(tmp_path, model_folder):
    from _text_fixtures import write_synthetic_csv
    from robustkit.checkpoint import load_model
    from robustkit.config import TrainConfig
    from robustkit.data.synonyms import synonym_candidates
    from robustkit.attacks.discrete import STOP_WORDS
    from robustkit.training import train
    data = write_synthetic_csv(tmp_path / "data")
    cfg = TrainConfig(name="tiny-rare", out_dir=str(tmp_path / "runs"), data="csv", data_dir=str(data),
                      model=str(model_folder), model_args={"max_length": 24, "rare_words": 1}, method="standard",
                      epochs=1, batch_size=16, lr=1e-3, eval_batch_size=64)
    res = train(cfg, progress=False)
    model, meta = load_model(res.run_dir)
    train_words = {w for line in (data / "train.csv").read_text().splitlines()[1:] for w in line.split(",")[0].split()}
    assert set(model.word_map.counts) == train_words and meta["model"]["rare_words"]["min_count"] == 1
    cands = synonym_candidates(stop_words=STOP_WORDS)
    # an unseen word with a seen synonym is read as that synonym, in the model's very inputs
    unseen = next(c for w in sorted(train_words) for c in cands(w) if c not in train_words
                  and model.word_map.target(c) != c)
    seen = model.word_map.target(unseen)
    assert seen in train_words
    assert torch.equal(model.encode([f"the {unseen} was"])["input_ids"], model.encode([f"the {seen} was"])["input_ids"])
    for bad in (0, "yes", 1.5):
        cfg_bad = TrainConfig(**{**cfg.__dict__, "name": "tiny-rare-bad", "model_args": {"rare_words": bad}})
        with pytest.raises(ValueError, match="model_args.rare_words"):
            train(cfg_bad, progress=False)
    with pytest.raises(ValueError, match="one word map"):
        model.set_synonym_encoding(True)


def test_random_substitution_skips_substitutes_the_word_map_undoes(monkeypatch):
    from robustkit.data.synonyms import RareWordMap
    table = {"good": ["great", "fine", "nice"], "great": ["good"], "fine": ["good"], "nice": ["good"]}
    words = RareWordMap({"good": 5, "nice": 3, "the": 9}, lambda w: table.get(w, []), min_count=2)
    assert words.word("great") == "good" and words.word("nice") == "nice"  # "great", "fine" are read as "good"
    texts = ["the good one", "a good day"] * 4
    for skip, allowed in ((True, {"nice"}), (False, {"great", "fine", "nice"})):
        obj = create_objective("random-sub", None, seed=0, samples=6, rate=1.0, skip_mapped=skip)
        monkeypatch.setattr(obj, "_candidates", lambda: (lambda w: table.get(w, [])))
        drawn = {new.split()[1] for v in obj.variants(texts, seed=1, word_map=words) for new in v}
        assert drawn == allowed
    with pytest.raises(TypeError, match="'skip_mapped' parameter"):
        create_objective("random-sub", None, skip_mapped="yes")
