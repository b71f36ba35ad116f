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
    import robustkit.text.objectives  # noqa: F401 - registers the text objectives
    from robustkit.text.models import is_text_model

    cfg = TrainConfig.from_yaml(path)
    assert cfg.name == path.stem, "a config's run name should match its file name"
    assert cfg.method in available_objectives()
    assert cfg.model in available_models() or is_text_model(cfg.model)
