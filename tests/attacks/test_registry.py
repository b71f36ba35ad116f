"""One registry for image and text attacks: names, kinds, modalities, listings, and boundary checks."""
import pytest

from robustkit import ThreatModel, attacks
from robustkit.attacks import Attack, register_attack
from robustkit.threat import SubstitutionThreat

LINF = ThreatModel("linf", 0.1)


def test_kinds_and_modalities():
    assert attacks.available(kind="discrete") == ["char", "word"]
    assert attacks.available(modality="text") == ["char", "text-transfer", "word"]
    assert set(attacks.available(kind="black-box")) == {"noise", "square", "text-transfer", "transfer"}
    assert set(attacks.available(kind="white-box")) == {"apgd-ce", "apgd-dlr", "cw-l2", "fgsm", "mifgsm", "pgd"}
    assert attacks.available(kind="white-box", modality="text") == []
    assert sorted(attacks.available(modality="vision") + attacks.available(modality="text")) == attacks.available()
    with pytest.raises(ValueError, match="'kind' parameter of available"):
        attacks.available(kind="grey-box")


def test_info_lists_every_attack_with_a_one_line_summary():
    info = attacks.info()
    assert list(info) == attacks.available()
    for name, row in info.items():
        assert row["kind"] == attacks.get_class(name).kind and row["modality"] == attacks.get_class(name).modality
        assert row["doc"] and "\n" not in row["doc"], name
    assert list(attacks.info(modality="text")) == ["char", "text-transfer", "word"]


@pytest.mark.parametrize("call", [lambda: attacks.create("pgdd", LINF), lambda: attacks.get_class("wrod"),
                                  lambda: attacks.create("chars", None)])
def test_unknown_name_is_a_value_error_with_suggestions(call):
    with pytest.raises(ValueError, match="Unknown attack .* Did you mean"):
        call()


def test_registration_errors():
    with pytest.raises(ValueError, match="already registered"):
        register_attack("pgd")(type("Again", (Attack,), {}))
    with pytest.raises(ValueError, match="'kind' parameter of attack 'odd'"):
        register_attack("odd")(type("Odd", (Attack,), {"kind": "grey-box"}))
    assert "odd" not in attacks.available()
    with pytest.raises(ValueError, match="Unknown attack"):
        attacks.unregister_attack("odd")


def test_threat_matches_the_modality():
    with pytest.raises(TypeError, match="'threat' parameter of pgd must be a robustkit.ThreatModel.*Got None"):
        attacks.create("pgd")
    with pytest.raises(TypeError, match="'threat' parameter of fgsm must be a robustkit.ThreatModel"):
        attacks.create("fgsm", SubstitutionThreat(0.2))
    with pytest.raises(TypeError, match="'threat' parameter of word must be a robustkit.threat.SubstitutionThreat"):
        attacks.create("word", LINF, candidates="embedding")
    with pytest.raises(ValueError, match="'attack' parameter of transfer must be a vision attack"):
        attacks.create("transfer", LINF, surrogate=lambda x: x, attack="word")


@pytest.mark.parametrize("name,bad,error", [
    ("fgsm", {"step_size": 0.0}, ValueError), ("pgd", {"step_size": 0}, ValueError),
    ("pgd", {"step_size": float("nan")}, TypeError), ("mifgsm", {"step_size": -0.1}, ValueError),
    ("mifgsm", {"decay": -1.0}, ValueError), ("mifgsm", {"steps": 0}, ValueError),
    ("cw-l2", {"lr": 0}, ValueError), ("cw-l2", {"kappa": -1}, ValueError),
    ("cw-l2", {"initial_const": "1"}, TypeError), ("square", {"p_init": 0}, ValueError),
    ("square", {"n_queries": 1.5}, TypeError), ("apgd-ce", {"rho": 1.5}, ValueError),
    ("noise", {"draws": 0}, ValueError), ("pgd", {"random_start": "no"}, TypeError),
    ("fgsm", {"clip_start": 1}, TypeError), ("apgd-dlr", {"targeted": None}, TypeError),
    ("pgd", {"seed": -1}, ValueError),
])
def test_vision_params_are_checked_at_the_boundary(name, bad, error):
    key = next(iter(bad))
    threat = LINF if "linf" in attacks.get_class(name).norms else ThreatModel("l2", 1.0)
    with pytest.raises(error, match=f"The '{key}' parameter of {name} must be"):
        attacks.create(name, threat, **bad)


def test_an_attack_refuses_a_norm_it_is_not_defined_for():
    # cw-l2 minimizes an L2 distance; under linf its result would only be clipped into the box.
    with pytest.raises(ValueError, match="'threat' parameter of cw-l2 must use the l2 norm.*Got norm='linf'"):
        attacks.create("cw-l2", LINF)
    assert attacks.create("cw-l2", ThreatModel("l2", 1.0)).threat.norm == "l2"


def test_zero_step_is_allowed_in_a_zero_ball():
    # eps warm-up schedules build attacks at eps = 0 with a step scaled to 0.
    for name in ("fgsm", "pgd", "mifgsm"):
        assert attacks.create(name, ThreatModel("linf", 0.0), step_size=0.0).step_size == 0.0


@pytest.mark.parametrize("name,bad,error", [
    ("word", {"max_share": 0}, ValueError), ("char", {"max_share": 1.5}, ValueError),
    ("word", {"min_embedding_cos": 2.0}, ValueError), ("word", {"min_similarity": -3}, ValueError),
    ("char", {"max_candidates": 0}, ValueError), ("char", {"max_queries": 0}, ValueError),
    ("char", {"batch_size": 2.5}, TypeError), ("word", {"importance": "random"}, ValueError),
    ("char", {"seed": -2}, ValueError),
])
def test_text_params_are_checked_at_the_boundary(name, bad, error):
    key = next(iter(bad))
    with pytest.raises(error, match=f"The '{key}' parameter of {name} must be"):
        attacks.create(name, SubstitutionThreat(0.2), candidates="embedding", **bad) if name == "word" else \
            attacks.create(name, SubstitutionThreat(0.2), **bad)


def test_max_share_comes_from_the_threat_unless_given():
    assert attacks.create("char", SubstitutionThreat(0.35)).max_share == 0.35
    assert attacks.create("char", SubstitutionThreat(0.35), max_share=0.1).max_share == 0.1
    atk = attacks.create("char", None)
    assert atk.max_share == 0.2 and atk.threat == SubstitutionThreat(0.2)
    assert attacks.create("char", SubstitutionThreat(0.0)).max_share == 0.0  # eps 0: change nothing


def test_text_attack_constructors_keep_working_with_keywords_only():
    # training objectives build them directly: WordSubstitutionAttack(**attack_args)
    atk = attacks.WordSubstitutionAttack(importance="gradient", max_candidates=8, min_similarity=None,
                                         candidates="embedding", max_share=0.3)
    assert atk.name == "word" and atk.max_share == 0.3 and atk.threat.eps == 0.3
    assert attacks.CharAttack(max_share=0.25).params()["max_share"] == 0.25
