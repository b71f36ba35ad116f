"""Acceptance: a text audit is the same cascade and the same report as an image audit.

A sentence counts as robust only if every attack of the ensemble fails on it: here one sentence is
broken by the first attack, one only by the second, and two by neither.
"""
from __future__ import annotations

import re

import torch

from robustkit import ThreatModel
from robustkit.attacks import AttackResult, DiscreteAttack, register_attack
from robustkit.attacks.registry import unregister_attack
from robustkit.evaluation import run_audit, write_report
from robustkit.threat import SubstitutionThreat

from _text_fixtures import KeywordModel


class _Swap(DiscreteAttack):
    """Replace the word ``self.word`` by "bad" (one word changed)."""

    word = "?"

    def _attack(self, model, texts, labels, seed):
        out = []
        p0 = model.predict_proba(texts).argmax(1).tolist()
        for t, y, p in zip(texts, labels, p0):
            words = t.split()
            changed = [[i, w, "bad"] for i, w in enumerate(words) if w == self.word][:1]
            for i, _, new in changed:
                words[i] = new
            adv = " ".join(words)
            pa = int(model.predict_proba([adv]).argmax(1))
            out.append(AttackResult(t, adv, y, p, pa, success=p == y and pa != y, skipped=p != y, changed=changed,
                                    n_words=len(words), queries=1))
        return out


class _SwapAlpha(_Swap):
    word = "alpha"


class _SwapBeta(_Swap):
    word = "beta"


TEXTS = ["a good alpha film", "a good beta film", "a good nice film", "a bad beta film"]
LABELS = torch.tensor([1, 1, 1, 0])


def _headings(markdown: str) -> set[str]:
    return {re.sub(r"\(.*", "", h).strip() for h in re.findall(r"^## (.+)$", markdown, flags=re.M)}


def test_text_audit_is_the_per_sample_worst_case_with_the_vision_report(tmp_path, digits, digits_model):
    register_attack("swap-alpha")(_SwapAlpha)
    register_attack("swap-beta")(_SwapBeta)
    try:
        doc = run_audit(KeywordModel(), TEXTS, LABELS, SubstitutionThreat(0.5),
                        attacks=[("swap-alpha", {}), ("swap-beta", {})], class_names=["negative", "positive"],
                        gallery=4, sanity=False)  # the masking checks run the word attack: a real model's job
    finally:
        unregister_attack("swap-alpha")
        unregister_attack("swap-beta")
    ev = doc["evaluation"]
    per = ev["per_sample"]
    assert per["robust"] == [False, False, True, True]
    assert per["broken_by"] == ["swap-alpha", "swap-beta", None, None]
    first, second = ev["attacks"]
    assert (first["n_attacked"], first["n_broken"]) == (4, 1)
    assert (second["n_attacked"], second["n_broken"]) == (3, 1)  # only what survived the first attack
    assert ev["robust_accuracy"]["value"] == 0.5 and len(ev["robust_accuracy"]["ci95"]) == 2
    assert doc["modality"] == "text" and doc["provenance"]["data"]["sha256"]
    assert doc["provenance"]["versions"]["torch"]
    text_md = write_report(doc, tmp_path / "text")["markdown"].read_text()

    x, y = digits.x_test[:40], digits.y_test[:40]
    vdoc = run_audit(digits_model, x, y, ThreatModel("linf", 0.1), preset="quick", class_names=digits.class_names,
                     sanity=False)
    vision_md = write_report(vdoc, tmp_path / "vision")["markdown"].read_text()
    assert vdoc["format"] == doc["format"] and set(vdoc) == set(doc)
    # Every section of an image report is in the text report, except the pictures of images.
    image_only = {"Adversarial examples"}  # images show a PNG grid there, sentences a table of the same name
    assert _headings(vision_md) - image_only <= _headings(text_md)
    assert "Adversarial examples" in _headings(text_md) and "*bad*" in text_md
    assert "95%" in text_md or "[" in text_md  # confidence intervals in the headline
    assert "Provenance" in _headings(text_md) and "Attack details" in _headings(text_md)


def test_text_audit_refuses_what_needs_continuous_inputs():
    import pytest

    from robustkit.modality import get_modality
    with pytest.raises(ValueError, match="continuous"):
        run_audit(KeywordModel(), TEXTS, LABELS, SubstitutionThreat(0.5), noise_sigmas=[0.1], sanity=False)
    with pytest.raises(ValueError, match="'norm' option does not apply to text"):
        get_modality("text").audit_threat(0.2, "l2", None, None)
    with pytest.raises(ValueError, match="'eps' parameter of SubstitutionThreat"):
        SubstitutionThreat(1.5)
    with pytest.raises(ValueError, match="non-empty strings"):
        run_audit(KeywordModel(), ["fine", "  "], LABELS[:2], SubstitutionThreat(0.5), sanity=False)


class _NoGradients(KeywordModel):
    """The keyword model declared non-differentiable (like an int8 model), with a float twin."""

    robustkit_differentiable = False

    def __init__(self, twin):
        super().__init__()
        self.twin = twin

    def robustkit_float_twin(self):
        return self.twin


def test_non_differentiable_text_model_is_also_attacked_by_transfer_from_its_twin():
    """Issue 13 (re-audit): a text model without gradients gets the preset's text attacks both crafted on its float
    twin and transferred (``text-transfer``) and run on it directly; robust = survives both."""
    from robustkit.evaluation.audit import non_differentiable_ensemble
    from robustkit.modality import get_modality
    twin = KeywordModel()
    specs, note = non_differentiable_ensemble(get_modality("text"), "standard", None, twin)
    preset = get_modality("text").presets["standard"]
    assert [n for n, _ in preset][-1] == "char"
    assert [(n, p.get("attack")) for n, p in specs] == [pair for name, _ in preset
                                                        for pair in (("text-transfer", name), (name, None))]
    assert "text-transfer[word]" in note and specs[0][1]["surrogate"] is twin

    register_attack("swap-alpha")(_SwapAlpha)
    try:
        target = _NoGradients(twin)
        doc = run_audit(target, TEXTS, LABELS, SubstitutionThreat(0.5), attacks=[("swap-alpha", {})],
                        class_names=["negative", "positive"], gallery=0, sanity=False)
    finally:
        unregister_attack("swap-alpha")
    ev = doc["evaluation"]
    names = [a["name"] for a in ev["attacks"]]
    assert names == ["text-transfer", "swap-alpha"]
    # "a good alpha film" -> "a good bad film", crafted on the twin, checked on the target: broken by the transfer
    assert ev["per_sample"]["broken_by"][0] == "text-transfer"
    assert ev["attacks"][0]["status"].startswith("ran") and ev["attacks"][0]["n_broken"] == 1
