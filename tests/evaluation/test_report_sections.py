"""The report answers the reader's questions (issue 12): what was audited (header), how training went, which
classes break, which preset produced each sweep point, what a warned check means, and how audits compare."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustkit import ThreatModel
from robustkit.attacks import AttackResult, DiscreteAttack, register_attack
from robustkit.attacks.registry import unregister_attack
from robustkit.cli import app
from robustkit.evaluation import plots, run_audit, write_report
from robustkit.evaluation.audit import _metrics, merge_headline_into_sweep, training_curve_from_metrics
from robustkit.evaluation.report import render_html, render_markdown
from robustkit.threat import SubstitutionThreat

from _text_fixtures import KeywordModel

runner = CliRunner()
ENV = {"CI": "1"}
METRICS = [{"epoch": 0, "train_loss": 1.0, "val_clean_acc": 0.7, "val_robust_acc": 0.4},
           {"epoch": 1, "train_loss": 0.8, "val_clean_acc": 0.8, "val_robust_acc": 0.5},
           {"epoch": 1, "train_loss": 0.7, "val_clean_acc": 0.85, "val_robust_acc": 0.55}]  # resumed: last wins


@pytest.fixture(scope="module")
def doc(digits_model, digits):
    """A Python-API audit: no run folder; the sweep holds 0.1 but not the headline eps 0.15."""
    return run_audit(digits_model, digits.x_test[:40], digits.y_test[:40], ThreatModel("linf", 0.15), preset="quick",
                     sweep=[0, 0.1, 0.3], class_names=digits.class_names, data={"name": "digits"})


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_cli_header_and_training_curve(run_folder, digits_model):
    (run_folder / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in METRICS) + "\n{broken\n")
    res = runner.invoke(app, ["audit", str(run_folder), "--data", "digits", "--preset", "quick", "--limit", "30",
                              "--sweep", "0,0.1"], env=ENV)
    assert res.exit_code == 0, res.output
    doc = json.loads((run_folder / "audit.json").read_text())
    n_params = sum(p.numel() for p in digits_model.parameters())
    assert doc["model"] == {"architecture": "small-cnn", "parameters": n_params, "method": "standard",
                            "training_eps": 0.1, "training_norm": "linf", "run_folder": str(run_folder)}
    assert doc["training_curve"] == {"epoch": [0, 1], "val_clean_acc": [0.7, 0.85], "val_robust_acc": [0.4, 0.55]}
    md = (run_folder / "audit.md").read_text()
    html = _text((run_folder / "audit.html").read_text())
    sha = doc["provenance"]["checkpoint"]["sha256"]
    for text in (md, html):
        header = text[:text.index("Headline")]  # the header comes first
        assert "small-cnn" in header and f"{n_params:,} parameters" in header
        assert "standard (trained at linf eps=0.1)" in header and sha in header
        assert "digits test, first 30 (n=30)" in header and str(run_folder) in header
        assert "Training curve" in text
    assert "| 1 | 0.850 | 0.550 |" in md and "audit_plots/training_curve.png" in md
    assert (run_folder / "audit_plots" / "training_curve.png").stat().st_size > 1000
    # the headline eps 0.1 was in the sweep: one number for it, the headline's, with its preset named
    sw = doc["sweep"]
    assert sw["eps"] == [0, 0.1] and sw["headline_eps"] == 0.1 and sw["presets"] == ["quick", "quick"]
    assert sw["robust_accuracy"][1] == doc["evaluation"]["robust_accuracy"] and sw["replaced"]["eps"] == 0.1


def test_training_curve_absent_or_empty(tmp_path):
    assert training_curve_from_metrics(tmp_path / "metrics.jsonl") is None
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_loss": 1.0}) + "\n")
    assert training_curve_from_metrics(tmp_path / "metrics.jsonl") is None


def test_python_api_header_says_na(doc, digits_model):
    assert doc["model"]["parameters"] == sum(p.numel() for p in digits_model.parameters())
    assert doc["model"]["method"] is None and doc["training_curve"] is None
    md = render_markdown(doc, plot_dir=None)
    header = md[md.index("## Header"):md.index("## Headline")]
    assert "| training method | n/a |" in header and "| checkpoint sha256 | n/a (in-memory model) |" in header
    assert "| run folder | n/a |" in header and "| data | digits (n=40) |" in header
    assert "Training curve" not in md


def test_metrics_use_every_class_and_none_where_undefined():
    conf, rows = _metrics([0, 0, 1, 1], [0, 1, 0, 0], 3)
    assert conf == [[1, 1, 0], [2, 0, 0], [0, 0, 0]]
    assert rows[0] == {"class": 0, "precision": pytest.approx(1 / 3), "recall": 0.5, "support": 2}
    assert rows[1]["precision"] == 0.0 and rows[1]["recall"] == 0.0
    assert rows[2] == {"class": 2, "precision": None, "recall": None, "support": 0}  # never seen nor predicted


def test_clean_and_adversarial_confusion_and_per_class_plots(doc, tmp_path):
    ev, m = doc["evaluation"], doc["metrics"]
    clean = np.asarray(m["confusion_clean"])
    assert clean.sum() == 40 and np.trace(clean) == ev["clean_accuracy"]["k"]
    assert [r["robust"]["k"] for r in ev["per_class"]] == [
        sum(1 for yy, r in zip(ev["per_sample"]["y"], ev["per_sample"]["robust"]) if r and yy == c)
        for c in range(10)]
    paths = write_report(doc, tmp_path)
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    for name in ("confusion_clean", "confusion_adversarial", "per_class"):
        assert f"audit_plots/{name}.png" in md and (tmp_path / "audit_plots" / f"{name}.png").is_file()
    assert "alt='Confusion matrix (clean)'" in html and "alt='Per-class clean and robust accuracy'" in html
    assert "| clean acc | robust acc |" in md


def test_headline_point_added_to_sweep_with_its_preset(doc, monkeypatch):
    sw = doc["sweep"]
    assert sw["eps"] == [0, 0.1, 0.15, 0.3] and sw["headline_eps"] == 0.15 and sw["headline_index"] == 2
    assert sw["presets"] == ["quick"] * 4 and sw["robust_accuracy"][2] == doc["evaluation"]["robust_accuracy"]
    md = render_markdown(doc, plot_dir=None)
    assert "| eps | robust accuracy | preset |" in md and "| quick (headline) |" in md
    figs = []
    monkeypatch.setattr(plots, "_png", lambda fig: figs.append(fig) or b"")
    plots.eps_curve(sw)
    ax = figs[0].axes[0]
    assert "headline (preset quick)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(line.get_marker() == "*" for line in ax.get_lines())


def test_weaker_sweep_preset_above_the_headline_is_said():
    acc = [{"value": v, "ci95": [v, v], "k": 0, "n": 10} for v in (1.0, 0.7, 0.6)]
    sweep = {"eps": [0, 0.1, 0.2], "robust_accuracy": acc, "preset": "quick", "norm": "linf"}
    merged = merge_headline_into_sweep(sweep, 0.1 + 1e-12, {"value": 0.5, "ci95": [0.4, 0.6]}, "standard")
    assert merged["presets"] == ["quick", "standard", "quick"] and merged["eps"] == [0, 0.1, 0.2]
    assert merged["replaced"]["robust_accuracy"]["value"] == 0.7 and merged["robust_accuracy"][1]["value"] == 0.5
    assert len(merged["notes"]) == 1 and "eps=0.2 (preset quick)" in merged["notes"][0]
    assert "overestimates" in merged["notes"][0]
    ok = merge_headline_into_sweep(sweep, 0.1, {"value": 0.65, "ci95": [0.6, 0.7]}, "standard")
    assert ok["notes"] == []


def test_warned_check_names_itself_and_its_advice(doc):
    d = copy.deepcopy(doc)
    advice = "Use a stronger preset or check the model for gradient masking."
    d["sanity"][0].update(status="warn", message=f"Robust accuracy rises by 5.0% as eps=0.1 grows. {advice}")
    d["sanity"].append({"name": "silent_check", "status": "fail", "message": "", "evidence": {"accuracy": 0.4}})
    d["verdict"].update(status="fail", warned=[d["sanity"][0]["name"]], failed=["silent_check"])
    name = d["sanity"][0]["name"]
    md, html = render_markdown(d, plot_dir=None), _text(render_html(d, {}))
    for text in (md, html):
        assert f"WARN {name}: Robust accuracy rises by 5.0% as eps=0.1 grows. (see Sanity checks)" in text
        assert advice in text  # the table holds the whole message, advice included
        assert "FAIL silent_check: (no message; evidence:" in text
    assert f"| {name} | WARN | Robust accuracy rises" in md


class _SwapAlpha(DiscreteAttack):
    """Replace the word "alpha" by "bad"."""

    def _attack(self, model, texts, labels, seed):
        out = []
        for t, y in zip(texts, labels):
            p = int(model.predict_proba([t]).argmax(1))
            adv = t.replace("alpha", "bad")
            pa = int(model.predict_proba([adv]).argmax(1))
            changed = [[i, "alpha", "bad"] for i, w in enumerate(t.split()) if w == "alpha"]
            out.append(AttackResult(t, adv, y, p, pa, success=p == y and pa != y, skipped=p != y, changed=changed,
                                    n_words=len(t.split()), queries=1))
        return out


def test_compare_vision_and_text_writes_html_beside_the_first_audit(doc, tmp_path, monkeypatch):
    register_attack("swap-alpha-12")(_SwapAlpha)
    try:
        text_doc = run_audit(KeywordModel(), ["a good alpha film", "a good film", "a bad film"],
                             torch.tensor([1, 1, 0]), SubstitutionThreat(0.5), attacks=[("swap-alpha-12", {})],
                             class_names=["negative", "positive"], sanity=False)
    finally:
        unregister_attack("swap-alpha-12")
    write_report(doc, tmp_path / "runs" / "vision")
    write_report(text_doc, tmp_path / "runs" / "text")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    res = runner.invoke(app, ["compare", str(tmp_path / "runs" / "vision" / "audit.json"),
                              str(tmp_path / "runs" / "text")], env=ENV)
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "vision" / "compare"
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "compare.md"]
    assert list(cwd.iterdir()) == []
    rows = json.loads((out / "compare.json").read_text())
    assert [r["modality"] for r in rows] == ["vision", "text"] and "words" in rows[1]["threat"].lower()
    html = (out / "compare.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "src='http" not in html
    assert "No eps sweep (not in the curves): " + str(tmp_path / "runs" / "text") in html
    res = runner.invoke(app, ["compare", str(tmp_path / "runs" / "text"), "--out", str(tmp_path / "cmp")], env=ENV)
    assert res.exit_code == 0 and (tmp_path / "cmp" / "compare.html").is_file()
    assert "data:image/png" not in (tmp_path / "cmp" / "compare.html").read_text()  # no sweep, no curves
    assert "--out" in runner.invoke(app, ["compare", "--help"], env=ENV).output


def test_compare_curves_keep_one_norm(doc, tmp_path):
    from robustkit.evaluation.report import write_compare
    other = copy.deepcopy(doc)
    other["sweep"]["norm"] = "word-share"
    html = write_compare([("a", doc), ("b", other)], tmp_path)["html"].read_text()
    assert html.count("data:image/png;base64,") == 1
    assert "Swept in another norm than linf (not in the curves): b." in html


def test_audit_written_before_issue_12_still_renders(doc):
    old = copy.deepcopy(doc)
    for key in ("model", "training_curve"):
        del old[key]
    for key in ("presets", "headline_eps", "headline_index", "headline_preset", "replaced", "notes"):
        del old["sweep"][key]
    md = render_markdown(old, plot_dir=None)
    assert "| model | n/a, n/a parameters |" in md and "| 0.15 | " in md and "| quick |" in md
    assert "(headline)" not in md
    plots.eps_curve(old["sweep"])
