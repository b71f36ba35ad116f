"""The audit report (JSON -> Markdown/HTML) and the audit CLI commands, including bad input."""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robustkit import ThreatModel
from robustkit.cli import app
from robustkit.evaluation import load_audit, run_audit, write_report

runner = CliRunner()
ENV = {"CI": "1"}


@pytest.fixture(scope="module")
def audit_doc(digits_model, digits):
    x, y = digits.x_test[:60], digits.y_test[:60]
    return run_audit(digits_model, x, y, ThreatModel("linf", 0.15), preset="quick", sweep=[0, 0.05, 0.1, 0.2],
                     noise_sigmas=[0.1], certify_sigma=0.25, certify_n=100, certify_n0=20, certify_limit=10,
                     class_names=digits.class_names, data={"name": "digits"})


def test_audit_document_has_everything(audit_doc):
    doc = json.loads(json.dumps(audit_doc))
    for key in ("evaluation", "preflight", "sanity", "sweep", "noise", "certification", "metrics", "gallery",
                "verdict", "provenance"):
        assert doc[key], key
    prov = doc["provenance"]
    assert prov["versions"]["torch"] and len(prov["data"]["sha256"]) == 64 and prov["seeds"] == [0]
    assert prov["wall_seconds"] > 0 and prov["device"]["device"] == "cpu"
    conf = np.asarray(doc["metrics"]["confusion_adversarial"])
    assert conf.sum() == 60 and np.trace(conf) == doc["evaluation"]["robust_accuracy"]["k"] + sum(
        1 for c, r, pa, yy in zip(*(doc["evaluation"]["per_sample"][k] for k in ("clean_correct", "robust",
                                                                                  "pred_adv", "y")))
        if not c and pa == yy)


def test_report_files_are_self_contained(audit_doc, tmp_path):
    paths = write_report(audit_doc, tmp_path)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") >= 5 and "src='http" not in html
    md = paths["markdown"].read_text()
    assert "## Headline" in md and "robust accuracy" in md and "audit_plots/eps_curve.png" in md
    assert (tmp_path / "audit_plots" / "gallery.png").stat().st_size > 1000
    assert load_audit(tmp_path)["evaluation"]["n"] == 60


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_html_renders_in_headless_chromium(audit_doc, tmp_path):
    """Acceptance 5: a real browser renders the report with its images (look at the screenshot too)."""
    paths = write_report(audit_doc, tmp_path)
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", "--window-size=1200,3000", f"--screenshot={shot}",
                        paths["html"].resolve().as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 50_000  # a blank page is a few kB


def test_cli_audit_check_compare_certify(run_folder, tmp_path):
    res = runner.invoke(app, ["audit", str(run_folder), "--data", "digits", "--preset", "quick", "--limit", "40",
                              "--sweep", "0,0.05,8/255", "--seed", "1"], env=ENV)
    assert res.exit_code == 0, res.output
    assert "robust accuracy" in res.output and (run_folder / "audit.html").is_file()
    doc = json.loads((run_folder / "audit.json").read_text())
    assert doc["threat"]["eps"] == 0.1 and doc["seed"] == 1 and doc["provenance"]["checkpoint"]["sha256"]
    assert doc["sweep"]["eps"][1] == pytest.approx(8 / 255)

    res = runner.invoke(app, ["check", str(run_folder), "--data", "digits", "--json"], env=ENV)
    assert res.exit_code == 0 and json.loads(res.output)["status"] == "pass"

    res = runner.invoke(app, ["compare", str(run_folder), str(run_folder / "audit.json"), "--out", str(tmp_path)],
                        env=ENV)
    assert res.exit_code == 0 and res.output.count("quick") == 2 and (tmp_path / "compare.md").is_file()
    assert "data:image/png;base64," in (tmp_path / "compare.html").read_text()  # the eps sweeps, overlaid

    res = runner.invoke(app, ["certify", str(run_folder), "--data", "digits", "--limit", "5", "--n", "50",
                              "--json"], env=ENV)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["num_samples"] == 5 and (run_folder / "certify.json").is_file()


def test_cli_time_budget_says_what_was_cut(run_folder, tmp_path):
    res = runner.invoke(app, ["audit", str(run_folder), "--data", "digits", "--preset", "quick", "--limit", "40",
                              "--max-minutes", "0.000001", "--sweep", "0,0.1", "--out", str(tmp_path)], env=ENV)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["cut"] and "cut:" in res.output
    assert "time budget" in (tmp_path / "audit.md").read_text()


def _npz_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "other.npz"
    np.savez(path, x=rng.random((20, 1, 5, 5), dtype=np.float32), y=np.arange(20) % 3)
    return path


@pytest.mark.parametrize("args,match", [
    (["--sweep", "0,-0.1"], "'sweep' option must be a comma-separated list of numbers >= 0"),
    (["--preset", "strongest"], "'preset' parameter"),
    (["--eps", "abc"], "'eps' parameter"),
])
def test_cli_bad_input(args, match, run_folder):
    res = runner.invoke(app, ["audit", str(run_folder), "--data", "digits", "--limit", "8", *args], env=ENV)
    assert res.exit_code == 2 and match in res.output, res.output


def test_cli_refuses_mismatched_data_spec(run_folder, tmp_path):
    res = runner.invoke(app, ["audit", str(run_folder), "--data", "npz", "--data-dir", str(_npz_dataset(tmp_path))],
                        env=ENV)
    assert res.exit_code == 2
    assert "trained on data with input_shape=[1, 8, 8]" in res.output and "[1, 5, 5]" in res.output
