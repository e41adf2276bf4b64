"""VGG19 layer names, shared by the exporter and the runtime (pure Python)."""

from __future__ import annotations

# VGG19 (Simonyan & Zisserman 2014) truncated at conv5_1: (name, in_channels, out_channels).
# An "avgpool" entry is a 2x2 stride-2 pool (the seed's TensorFlow SAME semantics).
ARCH: list[tuple[str, int, int]] = [
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), ("pool1", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), ("pool2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv3_4", 256, 256), ("pool3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv4_4", 512, 512), ("pool4", 512, 512),
    ("conv5_1", 512, 512),
]

# Every conv layer, in network order; a layer's name means its output after the ReLU.
LAYERS: list[str] = [name for name, _, _ in ARCH if name.startswith("conv")]
CHANNELS: dict[str, int] = {name: cout for name, _, cout in ARCH if name.startswith("conv")}


def canonical(name: str) -> str:
    """`conv4_2` or its alias `relu4_2` -> `conv4_2`; ValueError for anything else."""
    key = name.strip().lower()
    if key.startswith("relu"):
        key = "conv" + key[4:]
    if key not in CHANNELS:
        raise ValueError(f"unknown VGG19 layer {name!r}: expected one of {', '.join(LAYERS)}")
    return key
