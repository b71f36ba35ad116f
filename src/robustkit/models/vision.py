"""Vision architectures. Each builder takes (in_channels, num_classes, input_size) and adapts to them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _flat_size(features: nn.Module, in_channels: int, input_size: tuple[int, int]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, in_channels, *input_size)).numel())


def mlp(in_channels, num_classes, input_size, *, hidden: int = 256, depth: int = 2) -> nn.Module:
    d = in_channels * input_size[0] * input_size[1]
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, num_classes))
    return nn.Sequential(*layers)


def small_cnn(in_channels, num_classes, input_size, *, dropout: bool = True) -> nn.Module:
    """PyTorch's classic MNIST example: conv32-conv64 (3x3), max-pool, fc128."""
    features = nn.Sequential(nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten())
    n = _flat_size(features, in_channels, input_size)
    drop = (lambda p: nn.Dropout(p)) if dropout else (lambda p: nn.Identity())
    return nn.Sequential(features, drop(0.25), nn.Linear(n, 128), nn.ReLU(), drop(0.5), nn.Linear(128, num_classes))


def madry_cnn(in_channels, num_classes, input_size) -> nn.Module:
    """The MNIST-challenge network of Madry et al.: conv32 5x5, pool, conv64 5x5, pool, fc1024."""
    features = nn.Sequential(nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten())
    n = _flat_size(features, in_channels, input_size)
    return nn.Sequential(features, nn.Linear(n, 1024), nn.ReLU(), nn.Linear(1024, num_classes))


def wong_cnn(in_channels, num_classes, input_size, *, width: int = 1) -> nn.Module:
    """The MNIST network of Wong, Rice & Kolter (Fast-AT): conv16 4x4/2, conv32 4x4/2, fc100.

    ``width`` multiplies every layer's size: the strided convolutions keep even a 4x-wide version
    cheaper than Madry's network, which is what makes longer adversarial training fit on a CPU.
    """
    width = int(width)
    if width < 1:
        raise ValueError(f"The 'width' parameter of wong-cnn must be an integer >= 1. Got {width!r} instead.")
    features = nn.Sequential(nn.Conv2d(in_channels, 16 * width, 4, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(16 * width, 32 * width, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten())
    n = _flat_size(features, in_channels, input_size)
    return nn.Sequential(features, nn.Linear(n, 100 * width), nn.ReLU(), nn.Linear(100 * width, num_classes))


def lenet(in_channels, num_classes, input_size) -> nn.Module:
    """LeNet-5 (ReLU, max-pool), padded so it fits inputs as small as 8x8."""
    features = nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    n = _flat_size(features, in_channels, input_size)
    return nn.Sequential(features, nn.Linear(n, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, num_classes))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class _PreActNet(nn.Module):
    def __init__(self, in_channels, num_classes, widths, blocks, dropout=0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0] if len(widths) == 4 else 16, 3, 1, 1, bias=False)
        in_planes = self.conv1.out_channels
        layers = []
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(PreActBlock(in_planes, w, stride, dropout))
                in_planes = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def preact_resnet18(in_channels, num_classes, input_size) -> nn.Module:
    """PreAct ResNet-18 (He et al. 2016), the standard CIFAR-10 adversarial-training backbone."""
    return _PreActNet(in_channels, num_classes, (64, 128, 256, 512), (2, 2, 2, 2))


def wide_resnet(in_channels, num_classes, input_size, *, depth: int = 28, width: int = 10,
                dropout: float = 0.0) -> nn.Module:
    """WRN-depth-width (Zagoruyko & Komodakis 2016) with pre-activation blocks."""
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"The 'depth' parameter of wide-resnet must be 6n+4 (10, 16, 22, 28, 34, ...). "
                         f"Got {depth!r} instead.")
    n = (depth - 4) // 6
    return _PreActNet(in_channels, num_classes, (16 * width, 32 * width, 64 * width), (n, n, n), dropout)
