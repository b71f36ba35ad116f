"""The invariants every registered attack keeps (DESIGN decision 3), parametrized over the registry, so a
new attack is tested the day it is added: same shape/length, inside the threat model, no parameter
gradients touched, every module's train/eval flag restored, same seed -> same result.

Each modality has one checker; an attack of a modality without one fails at collection."""
import copy

import pytest
import torch
from torch import nn

from robustkit import ThreatModel, attacks
from robustkit.attacks import Attack, AttackResult, DiscreteAttack, check_constraints, register_attack
from robustkit.threat import SubstitutionThreat

# Small budgets keep the tests fast; attacks not listed run with their defaults.
PARAMS = {"pgd": {"steps": 5}, "mifgsm": {"steps": 5}, "apgd-ce": {"steps": 5}, "apgd-dlr": {"steps": 5},
          "cw-l2": {"steps": 10, "binary_search_steps": 2}, "square": {"n_queries": 30}, "noise": {"draws": 2},
          "transfer": {"attack_params": {"steps": 5}},
          "word": {"candidates": "embedding", "min_embedding_cos": 0.0, "min_similarity": 0.5, "max_candidates": 4},
          "char": {"max_candidates": 4}}
SETTINGS = {"vision": ("linf", "l2"), "text": (0.1, 0.3)}  # norms; shares of words that may change
CASES = [(n, s) for n in attacks.available() for s in SETTINGS[attacks.get_class(n).modality]
         if attacks.get_class(n).modality != "vision" or s in attacks.get_class(n).norms]


class TrainModeNet(nn.Module):
    """Has dropout + batch-norm so mode changes would show."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.1),
                                 nn.Linear(4 * 6 * 6, 10))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TrainModeNet()


def _params(name, request):
    p = copy.copy(PARAMS.get(name, {}))
    if name == "transfer":
        p["surrogate"] = request.getfixturevalue("net")
    if name == "word":
        p["encoder"] = request.getfixturevalue("bag_encoder")
    if name == "text-transfer":  # crafted on a surrogate (here the model itself), never querying the target
        p = {"surrogate": request.getfixturevalue("tiny_text_model"), "attack": "char",
             "attack_params": {"max_candidates": 4}}
    return p


def _mixed_modes(model, eval_part):
    """Training mode except ``eval_part``: the attack must give back exactly this."""
    model.train()
    eval_part.eval()
    return [m.training for m in model.modules()]


def _untouched_grads(model):
    """Half the parameters hold a .grad, half None; an attack may change neither."""
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.123) if i % 2 else None
    return lambda: all((p.grad is None) if i % 2 == 0 else bool((p.grad == 0.123).all())
                       for i, p in enumerate(params))


def check_vision(name, norm, request, params):
    net = request.getfixturevalue("net")
    x, y = request.getfixturevalue("tiny_batch")
    eps = 0.1 if norm == "linf" else 0.5
    threat = ThreatModel(norm, eps)
    modes = _mixed_modes(net, net.net[1])
    grads_ok = _untouched_grads(net)
    bn_stats = net.net[1].running_mean.clone()

    atk = attacks.create(name, threat, seed=3, **params)
    x_adv = atk(net, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool((threat.norm_of(x_adv - x) <= eps + 1e-6).all())
    assert x_adv.min() >= -1e-6 and x_adv.max() <= 1 + 1e-6
    assert [m.training for m in net.modules()] == modes
    assert grads_ok()
    assert torch.equal(net.net[1].running_mean, bn_stats)
    again = attacks.create(name, threat, seed=3, **params)(net, x, y)
    assert torch.equal(x_adv, again)


def check_text(name, eps, request, params):
    model = request.getfixturevalue("tiny_text_model")
    texts, y = request.getfixturevalue("text_batch")
    modes = _mixed_modes(model, model.encoder)
    grads_ok = _untouched_grads(model)

    atk = attacks.create(name, SubstitutionThreat(eps), seed=3, **params)
    x_adv = atk(model, texts, y)
    assert isinstance(x_adv, list) and len(x_adv) == len(texts) and all(isinstance(t, str) for t in x_adv)
    assert [r.adversarial for r in atk.last_results] == x_adv
    assert atk.max_share == eps
    for r in atk.last_results:
        assert check_constraints(r, max_share=eps, stop_words=atk.stop_words, min_similarity=atk.min_similarity) == []
    assert [m.training for m in model.modules()] == modes
    assert grads_ok()
    again = attacks.create(name, SubstitutionThreat(eps), seed=3, **params)(model, texts, y.tolist())
    assert again == x_adv
    return atk


CHECKS = {"vision": check_vision, "text": check_text}


@pytest.mark.parametrize("name,setting", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_attack_invariants(name, setting, request):
    CHECKS[attacks.get_class(name).modality](name, setting, request, _params(name, request))


def test_text_attacks_do_change_words(request):
    # Guards the invariant test against passing vacuously: on a random model the searches do edit texts.
    for name in attacks.available(modality="text"):
        atk = check_text(name, 0.3, request, _params(name, request))
        assert any(r.changed for r in atk.last_results), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", attacks.available(modality="vision"))
def test_attack_keeps_the_dtype_and_the_ball(name, dtype, digits_model, tiny_batch, request):
    x, y = tiny_batch
    model = copy.deepcopy(digits_model).to(dtype)
    params = _params(name, request)
    if name == "transfer":
        params["surrogate"] = model
    xd = x.to(dtype)
    norm = attacks.get_class(name).norms[0]
    eps = 0.1 if norm == "linf" else 1.0
    x_adv = attacks.create(name, ThreatModel(norm, eps), seed=0, **params)(model, xd, y)
    assert x_adv.dtype == dtype
    delta = (x_adv - xd).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + (1e-9 if dtype == torch.float64 else 1e-5)
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_toy_attacks_registered_in_a_test_are_created_and_keep_the_invariants(request):
    @register_attack("toy-sign")
    class ToySign(Attack):
        """A random corner of the ball: the smallest black-box attack there is."""

        kind = "black-box"

        def _perturb(self, model, x, y, target, generator):
            sign = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            return x + 2 * self.threat.eps * sign  # deliberately too far: the base class projects it back

    @register_attack("toy-upper")
    class ToyUpper(DiscreteAttack):
        """Upper-cases the longest words, as many as the budget allows."""

        def _attack(self, model, texts, labels, seed):
            from robustkit.attacks.discrete import budget
            out = []
            for t, y in zip(texts, labels):
                words = t.split()
                pick = sorted(range(len(words)), key=lambda i: -len(words[i]))[:budget(len(words), self.max_share)]
                adv = [w.upper() if i in pick else w for i, w in enumerate(words)]
                changed = [[i, words[i], adv[i]] for i in pick if adv[i] != words[i]]
                pred = int(model.predict_proba([" ".join(adv)]).argmax())
                out.append(AttackResult(t, " ".join(adv), y, -1, pred, pred != y, False, changed, len(words), 1))
            return out

    try:
        assert "toy-sign" in attacks.available(kind="black-box", modality="vision")
        assert attacks.info()["toy-upper"] == {"kind": "discrete", "modality": "text",
                                               "doc": "Upper-cases the longest words, as many as the budget allows."}
        for norm in SETTINGS["vision"]:
            check_vision("toy-sign", norm, request, {})
        for eps in SETTINGS["text"]:
            check_text("toy-upper", eps, request, {})
    finally:
        attacks.unregister_attack("toy-sign")
        attacks.unregister_attack("toy-upper")
    assert "toy-sign" not in attacks.available() and "toy-upper" not in attacks.available()


def test_params_are_reported():
    import json
    atk = attacks.create("pgd", ThreatModel("linf", 0.1), steps=7, restarts=2)
    p = atk.params()
    assert p["attack"] == "pgd" and p["steps"] == 7 and p["restarts"] == 2 and p["threat"]["eps"] == 0.1
    assert p["step_size"] == pytest.approx(2.5 * 0.1 / 7) and "seed" in p
    for name in attacks.available(kind="discrete"):  # text-transfer reports its inner attack's: below
        p = attacks.create(name, SubstitutionThreat(0.3), seed=2).params()
        assert p["attack"] == name and p["threat"] == {"norm": "word-share", "eps": 0.3, "bounds": None}
        assert p["max_share"] == 0.3 and p["seed"] == 2
        json.dumps(p)


def test_text_transfer_reports_its_inner_attack_and_surrogate(tiny_text_model):
    import json
    p = attacks.create("text-transfer", SubstitutionThreat(0.3), seed=2, surrogate=tiny_text_model, attack="char",
                       attack_params={"max_candidates": 4}).params()
    assert p["attack"] == "text-transfer" and p["inner"]["attack"] == "char" and p["inner"]["max_candidates"] == 4
    assert p["inner"]["max_share"] == 0.3 and p["seed"] == 2 and p["surrogate"]["class"]
    json.dumps(p, default=str)
    with pytest.raises(TypeError, match="'surrogate' parameter of text-transfer"):
        attacks.create("text-transfer", SubstitutionThreat(0.3))
    with pytest.raises(ValueError, match="'attack' parameter of text-transfer"):
        attacks.create("text-transfer", SubstitutionThreat(0.3), surrogate=tiny_text_model, attack="pgd")

