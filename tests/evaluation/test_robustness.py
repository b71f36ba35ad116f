"""evaluate / sweep_eps / noise_robustness: the masked cascade, per-sample worst case, honesty."""
import json
import math

import pytest
import torch

import robustkit
from robustkit import ThreatModel, attacks
from robustkit.evaluation import PRESETS, evaluate, noise_robustness, sweep_eps

THREAT = ThreatModel("linf", 0.15)
SMALL = [("apgd-ce", {"steps": 20}), ("apgd-dlr", {"steps": 20, "targeted": True, "n_target_classes": 3}),
         ("square", {"n_queries": 300})]


def test_public_name_and_presets():
    assert robustkit.evaluate is evaluate
    assert set(PRESETS) == {"quick", "fast", "standard", "thorough"}
    names = [n for n, _ in PRESETS["standard"]]
    assert names == ["apgd-ce", "apgd-dlr", "square"] and PRESETS["standard"][2][1]["n_queries"] == 5000


def test_quick_result_is_consistent_and_json(digits_model, eval_batch):
    x, y = eval_batch
    res = evaluate(digits_model, x, y, THREAT, "quick", seed=1)
    d = json.loads(json.dumps(res.to_dict()))
    ps = d["per_sample"]
    assert res.robust_accuracy <= res.clean_accuracy
    assert all(c for c, r in zip(ps["clean_correct"], ps["robust"]) if r)  # robust implies clean-correct
    assert d["robust_accuracy"]["k"] == sum(ps["robust"])
    lo, hi = d["robust_accuracy"]["ci95"]
    assert lo <= res.robust_accuracy <= hi
    assert d["attacks"][0]["params"]["steps"] == 20 and d["attacks"][0]["seed"] == 1
    assert sum(r["n"] for r in d["per_class"]) == len(y)
    # every broken sample really is misclassified at its adversarial example
    broken = res.clean_correct & ~res.robust
    with torch.no_grad():
        assert bool((digits_model(res.x_adv[broken]).argmax(1) != y[broken]).all())
    assert bool((THREAT.norm_of(res.x_adv - x) <= THREAT.eps + 1e-6).all())
    again = evaluate(digits_model, x, y, THREAT, "quick", seed=1)
    assert torch.equal(again.robust, res.robust)


def test_cascade_attacks_only_still_robust_samples(digits_model, eval_batch):
    x, y = eval_batch
    res = evaluate(digits_model, x, y, THREAT, attacks=SMALL)
    recs = res.attacks
    assert recs[0]["n_attacked"] == int(res.clean_correct.sum())
    for prev, nxt in zip(recs, recs[1:]):
        assert nxt["n_attacked"] == prev["robust_after"]
    assert recs[-1]["robust_after"] == int(res.robust.sum())
    assert {r["kind"] for r in recs} == {"white-box", "black-box"}
    # the later members attack what the first left and their breaks count: the cascade's robust set is the
    # first member's minus what the others broke (not a re-run that could disagree with it)
    first = evaluate(digits_model, x, y, THREAT, attacks=SMALL[:1])
    later = sum(r["n_broken"] for r in recs[1:])
    assert int(res.robust.sum()) == int(first.robust.sum()) - later
    assert bool((res.robust <= first.robust).all())


def test_standard_preset_at_most_quick(digits_model, digits):
    # An eps where PGD-20 (quick) leaves a real share robust: at eps=0.3 both presets leave 0% and the
    # comparison could not fail. The standard ensemble must be at least as strong.
    x, y, threat = digits.x_test[:40], digits.y_test[:40], ThreatModel("linf", 0.05)
    std = evaluate(digits_model, x, y, threat, "standard")
    quick = evaluate(digits_model, x, y, threat, "quick")
    assert quick.robust_accuracy >= 0.2, quick.robust_accuracy
    assert std.robust_accuracy <= quick.robust_accuracy
    assert [a["name"] for a in std.attacks] == [n for n, _ in PRESETS["standard"]]


def test_seeds_report_worst_case_and_spread(digits_model, eval_batch):
    x, y = eval_batch
    res = evaluate(digits_model, x, y, THREAT, "quick", seeds=3, seed=5)
    d = res.to_dict(per_sample=False)
    assert d["seeds"] == [5, 6, 7] and len(d["seed_spread"]["robust_accuracy_per_seed"]) == 3
    assert res.robust_accuracy <= d["seed_spread"]["min"]


def test_time_budget_is_reported(digits_model, eval_batch):
    x, y = eval_batch
    res = evaluate(digits_model, x, y, THREAT, attacks=SMALL, max_minutes=1e-9, batch_size=16)
    assert res.cut and any("upper bound" in n for n in res.notes)
    assert any(r["status"].startswith("cut") for r in res.attacks)


def test_masked_model_is_audited_black_box_and_still_broken(digits_model, masked_twin, eval_batch):
    """Acceptance 2: the gradient-masked twin is not reported as robust."""
    x, y = eval_batch
    twin = evaluate(digits_model, x, y, THREAT, attacks=SMALL)
    x_naive = attacks.create("apgd-ce", THREAT, steps=20)(masked_twin, x, y)  # white-box alone is fooled
    with torch.no_grad():
        naive = float((masked_twin(x_naive).argmax(1) == y).float().mean())
    masked = evaluate(masked_twin, x, y, THREAT, attacks=SMALL, surrogate=digits_model)
    assert masked.mode == "black-box only" and any("unusable" in n for n in masked.notes)
    assert [r["status"] for r in masked.attacks][:2] == ["skipped: input gradients unusable"] * 2
    assert naive > twin.robust_accuracy + 0.2
    assert masked.robust_accuracy <= twin.robust_accuracy + 0.08


def test_sweep_eps_and_noise(digits_model, eval_batch):
    x, y = eval_batch
    sw = sweep_eps(digits_model, x, y, THREAT, [0.2, 0, 0.05])
    assert sw["eps"] == [0, 0.05, 0.2]
    acc = [r["value"] for r in sw["robust_accuracy"]]
    clean = float((digits_model(x).argmax(1) == y).float().mean())
    assert acc[0] == pytest.approx(clean) and acc[0] > acc[1] > acc[2], acc  # strict: each eps step must bite
    nz = noise_robustness(digits_model, x, y, [0.0, 0.5], seed=0)
    assert nz["accuracy"][0]["value"] == pytest.approx(clean) and nz["accuracy"][1]["value"] < clean


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: sweep_eps(m, x, y, THREAT, [0.1, -0.1]), r"'eps' parameter of sweep_eps .* Got -0.1"),
    (lambda m, x, y: evaluate(m, x, y, THREAT, "strong"), r"'preset' parameter of evaluate .* 'strong'"),
    (lambda m, x, y: evaluate(m, x, y, THREAT, "standart"), "Did you mean 'standard'"),
    (lambda m, x, y: evaluate(m, x, y, THREAT, seeds=0), "'seeds' parameter of evaluate"),
    (lambda m, x, y: evaluate(m, x * 3 - 1, y, THREAT), "Normalize"),
])
def test_bad_input(call, match, digits_model, eval_batch):
    x, y = eval_batch
    with pytest.raises(ValueError, match=match):
        call(digits_model, x, y)


def test_threat_type_checked(digits_model, eval_batch):
    with pytest.raises(TypeError, match="'threat' parameter of evaluate"):
        evaluate(digits_model, *eval_batch, 0.1)


def test_focus_attacks_the_samples_nearest_to_breaking(digits_model, eval_batch):
    """`focus` hands a black-box attack only the share of still-robust samples with the smallest margin at
    their best white-box candidate; the rest keep their verdict; without a white-box attack before it, all."""
    from robustkit.attacks import margin
    x, y = eval_batch
    threat = ThreatModel("linf", 0.05)
    white = [("apgd-ce", {"steps": 10})]
    base = evaluate(digits_model, x, y, threat, attacks=white)
    res = evaluate(digits_model, x, y, threat, attacks=white + [("square", {"n_queries": 200, "focus": 0.3})])
    survivors = base.robust.nonzero().squeeze(1)
    assert survivors.numel() >= 10
    rec = res.attacks[1]
    want = max(1, math.ceil(0.3 * survivors.numel()))
    assert rec["n_attacked"] == want == rec["focus"]["attacked"] and rec["focus"]["applied"]
    assert "nearest to breaking" in rec["status"]
    with torch.no_grad():  # the attacked ones are those with the smallest margin at the white-box candidate
        m = margin(digits_model(base.x_adv[survivors]), y[survivors])
    assert rec["focus"]["largest_margin_attacked"] == pytest.approx(float(m.sort().values[want - 1]), abs=1e-3)
    assert torch.equal(res.robust[survivors][m.argsort()[want:]], torch.ones(survivors.numel() - want,
                                                                               dtype=torch.bool))
    alone = evaluate(digits_model, x, y, threat, attacks=[("square", {"n_queries": 20, "focus": 0.3})])
    assert not alone.attacks[0]["focus"]["applied"]
    assert alone.attacks[0]["n_attacked"] == int(alone.clean_correct.sum())
    with pytest.raises(ValueError, match="'focus' parameter of square"):
        evaluate(digits_model, x, y, threat, attacks=[("square", {"focus": 0})])
