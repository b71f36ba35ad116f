"""Bring your own model: every kind the commands' first argument accepts passes `check` and runs `attack`
and `audit` through the real CLI, and saving a foreign model stores how to rebuild it (never a pickle).

Kinds: a user's ``module:callable``, TorchScript, timm / torchvision (through stand-in modules with the
same interface: the real packages pull a 5 GB CUDA torch), a Hugging Face sequence-classification folder
(a tiny BERT built offline), an ONNX file (black-box: Square and transfer), a robustkit run (unchanged).
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
import types
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from robustkit import ThreatModel, attacks
from robustkit.checkpoint import CheckpointError, load_model, read_tensors, save_model
from robustkit.cli import app
from robustkit.models.foreign import build_zoo, detect_kind, load_any

runner = CliRunner()
FAST = ["--data", "digits", "--eps", "0.1", "--limit", "12"]
USER_MODULE = "byo_user_models"


def tiny_net(num_classes: int = 10, width: int = 16) -> nn.Module:
    """The user's own architecture: flattens an 8x8 digit (inputs in [0, 1], no normalisation needed)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine run many times faster on one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A user's project folder: their module on the path, reports under ./runs."""
    (tmp_path / f"{USER_MODULE}.py").write_text(textwrap.dedent("""
        from torch import nn

        def build(num_classes=10, width=16):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes))

        def not_a_model():
            return 42
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, USER_MODULE, raising=False)
    yield tmp_path
    sys.modules.pop(USER_MODULE, None)


def _seeded(fn, *a, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return fn(*a, **kw)


def run_cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


def check_attack_audit(ref, *extra, audit_extra=(), attack_extra=("--steps", "3")):
    """The acceptance path for one kind: check passes, attack and audit run end to end."""
    r = run_cli("check", ref, *extra, "--data", "digits", "--limit", "32")
    assert r.exit_code == 0, r.output
    assert "overall: PASS" in r.output or "overall: WARN" in r.output
    r = run_cli("attack", ref, *extra, *FAST, *attack_extra, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n"] == 12 and doc["robust_accuracy"] <= doc["clean_accuracy"]
    r = run_cli("audit", ref, *extra, *FAST, "--preset", "quick", "--examples", "2", *audit_extra)
    assert r.exit_code in (0, 1), r.output  # 1 = done, but a sanity check failed (a random tiny model may)
    assert "robust accuracy" in r.output
    return doc


# -- recognising the kind -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref,kind", [("timm:resnet18", "timm"), ("torchvision:resnet18", "torchvision"),
                                      ("hf:org/model", "huggingface"), ("pkg.mod:build", "callable"),
                                      ("org/model", "huggingface")])
def test_detect_kind_by_name(ref, kind):
    assert detect_kind(ref) == kind


def test_a_missing_path_under_an_existing_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="'runs/typo' does not exist"):
        detect_kind("runs/typo")


@pytest.mark.parametrize("make,match", [
    (lambda p: torch.save({"w": torch.zeros(1)}, p / "m.pt") or p / "m.pt", "robustkit never unpickles"),
    (lambda p: (p / "m.bin").write_bytes(b"\x80\x04junk") and p / "m.bin", "robustkit never unpickles"),
    (lambda p: (p / "m.txt").write_text("hello") and p / "m.txt", "of no kind robustkit reads"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "neither a robustkit run"),
    (lambda p: p / "missing.pt", "does not exist"),
    (lambda p: "timm:", "names no timm model"),
    (lambda p: save_file({"w": torch.zeros(2)}, str(p / "w.safetensors")) or p / "w.safetensors",
     "without a robustkit header.*--weights"),
])
def test_unknown_or_unsafe_models_are_refused_with_a_message(tmp_path, make, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_any(make(tmp_path))


# -- the user's own class: package.module:callable -----------------------------------------------------------
def test_callable_model_end_to_end_and_saved_as_import_path(workdir):
    ref = f"{USER_MODULE}:build"
    check_attack_audit(ref, "--model-arg", "width=12")
    assert (workdir / "runs" / f"callable-{ref.replace(':', '-')}" / "audit.json").is_file()
    model, meta = _seeded(load_any, ref, model_args={"width": 12})
    assert meta["model"] == {"family": "foreign", "loader": "callable", "ref": ref, "kwargs": {"width": 12},
                             "normalize": None, "input_shape": None, "num_classes": None}
    assert meta["data"] is None and meta["sha256"] is None
    path = save_model(workdir / "saved.safetensors", model)
    tensors, doc = read_tensors(path)
    assert doc["model"]["ref"] == ref and set(tensors) == set(model.state_dict())
    again, _ = load_model(path)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(again(x), model(x))
    # --weights: a plain safetensors state dict for the same architecture
    save_file(model.state_dict(), str(workdir / "w.safetensors"))
    loaded, meta = load_any(ref, model_args={"width": 12}, weights=workdir / "w.safetensors")
    assert torch.equal(loaded(x), model(x)) and meta["source"]["weights"]["sha256"]


@pytest.mark.parametrize("ref,kwargs,err,match", [
    ("no_such_module_xyz:build", {}, ModuleNotFoundError, "Cannot import module 'no_such_module_xyz'"),
    (f"{USER_MODULE}:missing", {}, ValueError, "has no attribute 'missing'"),
    (f"{USER_MODULE}:not_a_model", {}, TypeError, "must return a torch.nn.Module"),
    (f"{USER_MODULE}:build", {"depth": 3}, TypeError, r"--model-arg"),
])
def test_callable_mistakes_are_named(workdir, ref, kwargs, err, match):
    with pytest.raises(err, match=match):
        load_any(ref, model_args=kwargs)


def test_weights_that_do_not_fit_are_named(workdir):
    save_file({"1.weight": torch.zeros(3, 3)}, str(workdir / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"does not fit the model.*missing keys"):
        load_any(f"{USER_MODULE}:build", weights=workdir / "bad.safetensors")
    torch.save({}, workdir / "w.pt")
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        load_any(f"{USER_MODULE}:build", weights=workdir / "w.pt")


def test_foreign_model_without_data_asks_for_data(workdir):
    r = run_cli("check", f"{USER_MODULE}:build")
    assert r.exit_code == 2 and "The 'data' option is required" in r.output and "records no dataset" in r.output


def test_train_with_the_users_callable_reloads_through_the_foreign_family(workdir):
    from robustkit.config import TrainConfig
    from robustkit.training import train
    cfg = TrainConfig(name="own", out_dir=str(workdir / "runs"), data="digits", model=f"{USER_MODULE}:build",
                      model_args={"width": 8}, method="standard", epochs=1, eval_size=64, limit=256,
                      optimizer="adam", lr=1e-2, schedule="constant", weight_decay=0.0)
    res = train(cfg, progress=False)
    model, meta = load_model(res.run_dir)
    spec = meta["model"]
    assert spec["family"] == "foreign" and spec["ref"] == f"{USER_MODULE}:build" and spec["kwargs"]["width"] == 8
    assert spec["normalize"]["mean"] and spec["kwargs"]["num_classes"] == 10
    r = run_cli("attack", res.run_dir, "--limit", "8", "--steps", "2", "--eps", "0.1")
    assert r.exit_code == 0, r.output


# -- TorchScript ---------------------------------------------------------------------------------------------------
def test_torchscript_end_to_end_and_saved_with_its_hash(workdir):
    net = _seeded(tiny_net)
    path = workdir / "scripted.pt"
    torch.jit.script(net).save(str(path))
    check_attack_audit(path)
    model, meta = load_any(path)
    assert meta["model"]["loader"] == "torchscript" and meta["sha256"] == meta["model"]["sha256"]
    saved = save_model(workdir / "ts.safetensors", model)
    again, _ = load_model(saved)
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(again(x), net(x))
    torch.jit.script(_seeded(tiny_net, width=20)).save(str(path))  # same file name, other content
    with pytest.raises(CheckpointError, match="changed since the checkpoint was saved"):
        load_model(saved)


# -- timm / torchvision through stand-ins with the same interface -------------------------------------------------
def _fake_timm():
    calls = []

    def create_model(name, pretrained=False, num_classes=1000, **kw):
        calls.append({"name": name, "pretrained": pretrained, "num_classes": num_classes, **kw})
        if name != "tiny_mlp":
            raise RuntimeError(f"Unknown model ({name})")  # what timm raises
        return tiny_net(num_classes, **kw)
    return types.SimpleNamespace(create_model=create_model, calls=calls)


def _fake_torchvision():
    def get_model(name, weights=None, **kw):
        if name != "tiny_mlp":
            raise ValueError(f"Unknown model {name}")  # what torchvision raises
        return tiny_net(**kw)
    return types.SimpleNamespace(models=types.SimpleNamespace(get_model=get_model))


def test_timm_stand_in_with_safetensors_weights_end_to_end(workdir, monkeypatch):
    fake = _fake_timm()
    monkeypatch.setitem(sys.modules, "timm", fake)
    weights = workdir / "tiny.safetensors"
    save_file(_seeded(tiny_net, 10).state_dict(), str(weights))
    check_attack_audit("timm:tiny_mlp", "--model-arg", "num_classes=10", "--weights", weights)
    assert fake.calls[-1] == {"name": "tiny_mlp", "pretrained": False, "num_classes": 10}
    model, meta = load_any("timm:tiny_mlp", model_args={"num_classes": 10, "mean": [0.5], "std": [0.25]},
                           weights=weights)
    assert isinstance(model[0], nn.Module) and meta["model"]["normalize"] == {"mean": [0.5], "std": [0.25]}
    again, _ = load_model(save_model(workdir / "t.safetensors", model))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(again(x), model(x))
    with pytest.raises(ValueError, match="Cannot build the timm model 'resnet9000'"):
        load_any("timm:resnet9000")
    with pytest.raises(ValueError, match="--allow-download"):
        load_any("timm:tiny_mlp", model_args={"pretrained": True})


def test_torchvision_stand_in_end_to_end(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision())
    check_attack_audit("torchvision:tiny_mlp", "--model-arg", "width=8")


@pytest.mark.parametrize("kind,extra", [("timm", "timm"), ("torchvision", "vision")])
def test_missing_zoo_package_names_the_extra(monkeypatch, kind, extra):
    monkeypatch.setitem(sys.modules, kind, None)  # not installed
    with pytest.raises(ModuleNotFoundError, match=rf"pip install 'robustkit\[{extra}\]'"):
        build_zoo(kind, "resnet18")
    r = run_cli("check", f"{kind}:resnet18", "--data", "digits")
    assert r.exit_code == 2 and f"robustkit[{extra}]" in r.output


# -- Hugging Face sequence-classification folders (text) --------------------------------------------------------
@pytest.fixture()
def hf_folder(tmp_path):
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertForSequenceClassification

    from _text_fixtures import make_tokenizer
    folder = tmp_path / "my-bert"
    tok = make_tokenizer(folder)
    tok.save_pretrained(str(folder))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2)
    _seeded(BertForSequenceClassification, cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture()
def csv_texts(tmp_path):
    from _text_fixtures import synthetic_sentences
    folder = tmp_path / "texts"
    folder.mkdir()
    for split, n, seed in (("train", 16, 0), ("dev", 8, 1)):
        texts, labels = synthetic_sentences(n, seed=seed)
        (folder / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels)))
    return folder


def test_hugging_face_folder_end_to_end(workdir, hf_folder, csv_texts):
    data = ["--data", "csv", "--data-dir", csv_texts]
    r = run_cli("check", hf_folder, *data, "--limit", "8")
    assert r.exit_code == 0, r.output
    r = run_cli("attack", hf_folder, *data, "--attack", "char", "--limit", "4", "--eps", "0.3", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["modality"] == "text"
    r = run_cli("audit", f"hf:{hf_folder}", *data, "--attack", "char", "--limit", "4", "--eps", "0.3")
    assert r.exit_code in (0, 1) and "robust accuracy" in r.output, r.output
    model, meta = load_any(hf_folder)
    assert meta["model"]["family"] == "text" and meta["sha256"] is None and model.num_classes == 2
    again, _ = load_model(save_model(workdir / "bert.safetensors", model))
    texts = ["the movie was good", "the plot was awful"]
    assert torch.allclose(again.predict_proba(texts), model.predict_proba(texts), atol=1e-5)
    r = run_cli("check", hf_folder, "--data", "digits")
    assert r.exit_code == 2 and "is a text model but --data 'digits' is vision data" in r.output


def test_hub_id_stays_offline_without_allow_download(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="--allow-download"):
        load_any("hf:robustkit-test/definitely-not-cached-model")


# -- ONNX: a black box -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_mlp(digits):
    """A robustkit MLP fitted in well under a second (full-batch Adam): the ONNX model and its surrogate."""
    from robustkit.models import model_for_dataset
    model = _seeded(model_for_dataset, "mlp", digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(digits.x_train), digits.y_train).backward()
        opt.step()
    return model.eval()


@pytest.fixture()
def onnx_file(workdir, trained_mlp, digits):
    pytest.importorskip("onnxruntime")
    path = workdir / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(trained_mlp, (digits.x_test[:2],), str(path), input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    surrogate = save_model(workdir / "surrogate.safetensors", trained_mlp, data=digits.spec(),
                           threat={"norm": "linf", "eps": 0.1, "bounds": [0, 1]})
    return path, surrogate


def test_onnx_model_black_box_and_transfer_end_to_end(onnx_file, trained_mlp, digits):
    path, surrogate = onnx_file
    digits_model = trained_mlp
    model, meta = load_any(path)
    assert model.robustkit_differentiable is False and meta["model"]["loader"] == "onnx" and meta["sha256"]
    x = digits.x_test[:16]
    assert torch.allclose(model(x), digits_model(x), atol=1e-4)
    # gradient attacks are refused in one place, with what to do instead
    with pytest.raises(ValueError, match=r"white-box \(gradient\) attack.*--attack square.*--surrogate"):
        attacks.create("pgd", ThreatModel("linf", 0.1))(model, x, digits.y_test[:16])
    r = run_cli("attack", path, *FAST, "--attack", "pgd")
    assert r.exit_code == 2 and "--attack square" in r.output
    r = run_cli("attack", path, *FAST, "--param", "n_queries=30", "--json")  # default: square
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["attack"]["attack"] == "square"
    r = run_cli("attack", path, *FAST, "--surrogate", surrogate, "--param", "attack_params={steps: 5}", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["attack"]["attack"] == "transfer" and doc["robust_accuracy"] < doc["clean_accuracy"]
    r = run_cli("audit", path, *FAST, "--preset", "quick", "--surrogate", surrogate)
    assert r.exit_code in (0, 1) and "robust accuracy" in r.output, r.output
    audit = json.loads((path.parent / "runs" / "onnx-digits" / "audit.json").read_text())
    assert audit["differentiable"] is False
    assert {a["name"] for a in audit["evaluation"]["attacks"]} >= {"transfer", "square"}
    r = run_cli("check", path, "--data", "digits", "--limit", "16")
    assert "input_gradients" in r.output and "black-box and transfer" in r.output
    assert r.exit_code == 0 and "WARN  input_gradients" in r.output, r.output  # declared, not a failure
    again, _ = load_model(save_model(path.parent / "onnx.safetensors", model))
    assert torch.equal(again(x), model(x))


@pytest.mark.parametrize("args,match", [
    (["--model-arg", "num_classes=3"], r"gives outputs of shape \(2, 3\).*has 10 classes.*num_classes=10"),
    (["--model-arg", "width=0.5"], "Calling the model"),
    (["--data-option", "scale=2"], "not an option of dataset 'digits'"),
    (["--weights", "nope.safetensors"], "does not exist"),
])
def test_foreign_model_that_does_not_fit_the_data_is_named(workdir, args, match):
    r = run_cli("check", f"{USER_MODULE}:build", "--data", "digits", *args)
    assert r.exit_code == 2 and re.search(match, r.output), r.output


def test_foreign_model_that_fails_on_the_inputs_is_named(workdir, tmp_path):
    folder = tmp_path / "imgs"
    import numpy as np
    from PIL import Image
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((5, 5), 50 * i, dtype=np.uint8)).save(folder / cls / f"{i}.png")
    r = run_cli("check", f"{USER_MODULE}:build", "--model-arg", "num_classes=2", "--data", "image-folder",
                "--data-dir", folder)
    assert r.exit_code == 2 and "fails on --data 'image-folder' inputs of shape (1, 1, 5, 5)" in r.output, r.output


def test_onnx_with_a_fixed_batch_and_wrong_inputs(tmp_path):
    pytest.importorskip("onnxruntime")
    from robustkit.models.onnx import OnnxModel
    net = _seeded(tiny_net).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(4, 1, 8, 8),), str(tmp_path / "fixed.onnx"), input_names=["x"],
                          dynamo=False)
    model = OnnxModel(tmp_path / "fixed.onnx")
    x = torch.rand(7, 1, 8, 8)  # two batches of 4, the last one padded
    assert model.fixed_batch == 4 and torch.allclose(model(x), net(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"refused an input of shape .* \(it expects \[4, 1, 8, 8\]\)"):
        model(torch.rand(4, 1, 4, 4))
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="is not a loadable ONNX model"):
        OnnxModel(tmp_path / "bad.onnx")
