#!/usr/bin/env python3
"""Writes the committed ONNX seeds for the `onnx_ingest` fuzz target.

    /work/venv/bin/python fuzz/tools/make_onnx_seeds.py [OUT_DIR]

Every model has the converter's interface: x f32[1,C,H,W], t i64[1] -> eps with
x's shape, opset 17, exported like models/train.py does. Weights are seeded and
every file stays well under 200 KB.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "models"))
import train  # noqa: E402  (UNet, ResBlock, Attention, timestep_embedding, export_onnx)


class ConvOnly(nn.Module):
    """One 3x3 convolution; t enters as a scalar bias."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t):
        return self.conv(x) + 1e-3 * t.to(torch.float32)[:, None, None, None]


class NormBlock(nn.Module):
    """conv -> GroupNorm -> SiLU -> conv, plus a sinusoidal timestep embedding."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.GroupNorm(4, 8)
        self.temb = nn.Linear(8, 8)
        self.conv_out = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x, t):
        h = F.silu(self.norm(self.conv_in(x)))
        h = h + self.temb(train.timestep_embedding(t, 8))[:, :, None, None]
        return self.conv_out(h)


class MiniUNet(nn.Module):
    """Two resolution levels of models/train.py's UNet blocks with 8 channels."""

    def __init__(self, c=8, temb_in=8, temb=16):
        super().__init__()
        self.temb_in = temb_in
        self.temb_mlp = nn.Sequential(nn.Linear(temb_in, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(1, c, 3, padding=1)
        self.down0 = train.ResBlock(c, c, temb)
        self.ds0 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.mid = train.ResBlock(c, c, temb)
        self.attn = train.Attention(c)
        self.us0 = nn.Conv2d(c, c, 3, padding=1)
        self.up0 = train.ResBlock(c + c, c, temb)
        self.norm_out = nn.GroupNorm(8, c)
        self.conv_out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x, t):
        temb = self.temb_mlp(train.timestep_embedding(t, self.temb_in))
        s0 = self.down0(self.conv_in(x), temb)
        h = self.attn(self.mid(self.ds0(s0), temb))
        h = self.us0(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up0(torch.cat([h, s0], dim=1), temb)
        return self.conv_out(F.silu(self.norm_out(h)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "seeds", "onnx_ingest")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    models = [
        ("conv3x3.onnx", ConvOnly(), (1, 1, 4, 4)),
        ("groupnorm.onnx", NormBlock(), (1, 1, 4, 4)),
        ("mini_unet_2level.onnx", MiniUNet(), (1, 1, 8, 8)),
        ("train_unet_ch8.onnx", train.UNet(ch=(8, 8, 8), temb_in=8, temb=16), (1, 1, 8, 8)),
    ]
    for name, model, shape in models:
        path = os.path.join(out, name)
        args = (torch.randn(shape), torch.tensor([7], dtype=torch.int64))
        train.export_onnx(model, path, args, ["x", "t"], ["eps"])
        size = os.path.getsize(path)
        print(f"{name}: {size} bytes")
        assert size < 200_000, f"{name} is {size} bytes, above the 200 KB seed budget"


if __name__ == "__main__":
    main()
