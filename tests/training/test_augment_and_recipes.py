"""The CIFAR-10 recipes (issue 17): crop+flip augmentation, and the shipped configs run end to end where
CIFAR-10's python batches are (here: a tiny stand-in folder in the real format)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robustkit.config import TrainConfig
from robustkit.data.augment import augmented, crop_flip
from robustkit.training import train

ROOT = Path(__file__).resolve().parents[2]


def test_crop_flip_is_a_shifted_window_of_the_padded_image_possibly_mirrored():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, a:a + 8, b:b + 8] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    again = crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)  # seeded: a resumed run sees the same batches


def test_augmented_batches_are_reproducible_per_epoch_and_batch():
    x, y = torch.rand(10, 1, 6, 6), torch.arange(10)

    def batches(epoch):
        yield x[:5], y[:5]
        yield x[5:], y[5:]
    batches.num_batches = 2
    aug = augmented(batches, "crop-flip", seed=3)
    first, second = list(aug(0)), list(aug(0))
    assert aug.num_batches == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(first, second))
    assert not torch.equal(list(aug(1))[0][0], first[0][0])
    with pytest.raises(ValueError, match="'augment' parameter must be one of crop-flip"):
        augmented(batches, "mixup", seed=0)


def _fake_cifar(folder: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in ["data_batch_1", "test_batch"]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        d[b"labels"] = [int(v) for v in d[b"labels"]]
        (folder / name).write_bytes(pickle.dumps(d))


@pytest.mark.parametrize("recipe", ["cifar10-fast-preact", "cifar10-pgd-preact"])
def test_cifar10_recipes_run_where_the_data_is(recipe, tmp_path):
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    cfg = TrainConfig.from_yaml(ROOT / "configs" / f"{recipe}.yaml", overrides=[
        f"data_dir={tmp_path}", "epochs=1", "batch_size=16", "val_size=8", "eval_size=8", "eval_steps=1",
        f"out_dir={tmp_path / 'runs'}", "method_args.steps=1" if "pgd" in recipe else "seed=0"])
    assert cfg.augment == "crop-flip" and cfg.model == "preact-resnet18" and abs(cfg.eps - 8 / 255) < 1e-12
    result = train(cfg)
    assert len(result.history) == 1 and (result.run_dir / "best.safetensors").is_file()
