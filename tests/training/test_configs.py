"""Every config shipped in configs/ must load, validate and name things that exist: a typo there
would otherwise surface only minutes into someone's training run."""
from pathlib import Path

import pytest

from robustkit.config import TrainConfig
from robustkit.models import available_models
from robustkit.training import available_objectives

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_configs_exist_for_every_documented_experiment():
    names = {p.stem for p in CONFIGS}
    for needed in ("digits-fast", "fmnist-standard", "fmnist-fast", "fmnist-pgd", "fmnist-trades", "mnist-fast",
                   "mnist-fgsm-seed", "mnist-seed-standard", "mnist-fast-wong"):
        assert needed in names, f"configs/{needed}.yaml is missing"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_names_known_parts(path):
    from robustkit.models.text import is_text_model

    cfg = TrainConfig.from_yaml(path)
    assert cfg.name == path.stem, "a config's run name should match its file name"
    assert cfg.method in available_objectives()
    assert cfg.model in available_models() or is_text_model(cfg.model)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads "1e-4" as a string; the config must still take it as a learning rate.
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 1e-4\nweight_decay: 5e-4\nmethod_args: {step_size: 2.5e-2}\nname: 1e5\n")
    cfg = TrainConfig.from_yaml(cfg_file, overrides=["lr=3e-4"])
    assert cfg.lr == pytest.approx(3e-4) and cfg.weight_decay == pytest.approx(5e-4)
    assert cfg.method_args["step_size"] == pytest.approx(0.025)
    assert cfg.name == "1e5"  # text fields stay text
    with pytest.raises(TypeError, match="'lr'"):
        TrainConfig.from_yaml(cfg_file, overrides=["lr=fast"])
