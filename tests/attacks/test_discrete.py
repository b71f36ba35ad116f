"""The call shape of text attacks (the same as every attack) and the checks their base class owns."""
import pytest
import torch

from robustkit import attacks
from robustkit.threat import SubstitutionThreat


@pytest.fixture()
def char():
    return attacks.create("char", SubstitutionThreat(0.3), seed=1, max_candidates=4)


def test_call_returns_texts_and_keeps_the_details(char, tiny_text_model, text_batch):
    texts, y = text_batch
    x_adv = char(tiny_text_model, texts, y)
    assert x_adv == [r.adversarial for r in char.last_results] and len(x_adv) == len(texts)
    # The older entry point returns the same results, and its seed overrides the constructor's.
    assert [r.adversarial for r in char.attack(tiny_text_model, texts, y.tolist(), seed=1)] == x_adv
    assert char.attack(tiny_text_model, texts, y.tolist(), seed=1) == char.last_results
    assert char(tiny_text_model, [], []) == [] and char.last_results == []


def test_eps_zero_changes_nothing(tiny_text_model, text_batch):
    texts, y = text_batch
    atk = attacks.create("word", SubstitutionThreat(0.0), candidates="embedding", min_similarity=None)
    assert atk(tiny_text_model, texts, y) == texts


def test_works_under_no_grad(tiny_text_model, text_batch):
    # evaluation code may call attacks inside torch.no_grad(); gradient importance needs autograd
    texts, y = text_batch
    atk = attacks.create("word", None, candidates="embedding", min_similarity=None, importance="gradient")
    with torch.no_grad():
        assert len(atk(tiny_text_model, texts, y)) == len(texts)
    assert all(p.grad is None for p in tiny_text_model.parameters())


@pytest.mark.parametrize("x,y,error,match", [
    ("good film", [1], TypeError, "'x' parameter of char must be a list of strings"),
    (["good", ""], [1, 0], ValueError, "'x' parameter of char must hold non-empty strings"),
    (["good", 3], [1, 0], ValueError, "'x' parameter of char must hold non-empty strings"),
    (["good"], [1, 0], ValueError, "'y' parameter of char must have one entry per text"),
    (["good"], [2], ValueError, r"'y' parameter of char must hold class indices in \[0, 1\]"),
    (["good"], [-1], ValueError, "'y' parameter of char must hold class indices"),
    (["good"], torch.tensor([0.5]), TypeError, "'y' parameter of char must be a 1-D integer tensor"),
    (["good"], [1.0], TypeError, "'y' parameter of char must be a list of ints"),
])
def test_bad_input_names_the_argument(char, tiny_text_model, x, y, error, match):
    with pytest.raises(error, match=match):
        char(tiny_text_model, x, y)


def test_targeted_and_wrong_model_are_refused(char, tiny_text_model):
    with pytest.raises(NotImplementedError, match="'target' parameter of char"):
        char(tiny_text_model, ["good film"], [1], target=[0])
    with pytest.raises(TypeError, match="'model' parameter of char must be a text classifier"):
        char(torch.nn.Linear(2, 2), ["good film"], [1])


def test_an_attack_leaving_its_budget_is_caught(tiny_text_model):
    class Greedy(attacks.DiscreteAttack):  # not registered: the base class's checks need no registry
        name = "too-greedy"

        def _attack(self, model, texts, labels, seed):
            return [attacks.AttackResult(t, t.upper(), y, y, y, False, False, [], len(t.split()))
                    for t, y in zip(texts, labels)]

    with pytest.raises(RuntimeError, match="'too-greedy' left its threat model on text 0"):
        Greedy(SubstitutionThreat(0.1))(tiny_text_model, ["the plot was good and the cast was fine"], [1])
