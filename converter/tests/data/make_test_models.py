#!/usr/bin/env python3
"""Regenerates the small ONNX files the converter tests use.

    /work/venv/bin/python converter/tests/data/make_test_models.py

tiny_unet.onnx      the shipped UNet architecture (models/train.py) at toy size, 8x8 input
one_input.onnx      a conv with only the image input (a UNet needs x and t)
dynamic_hw.onnx     x with symbolic height/width
unsupported.onnx    uses Tanh, which the runtime op set lacks
nan_weights.onnx    a conv whose weights hold NaN
"""
import os
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "models"))
import train  # noqa: E402


def export(model, path, args, inputs, dynamic_axes=None):
    model.eval()
    kw = dict(opset_version=17, input_names=inputs, output_names=["eps"], do_constant_folding=True)
    if dynamic_axes:
        kw["dynamic_axes"] = dynamic_axes
    try:
        torch.onnx.export(model, args, os.path.join(HERE, path), dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(model, args, os.path.join(HERE, path), **kw)


class WithT(nn.Module):
    """conv(x) (+ act) + a tiny function of t, so both inputs are live."""

    def __init__(self, act=None):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.act = act

    def forward(self, x, t):
        h = self.conv(x)
        if self.act is not None:
            h = self.act(h)
        return h + torch.sin(t.to(torch.float32)).reshape(1, 1, 1, 1)


class OnlyX(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def main():
    torch.manual_seed(0)
    x8 = torch.randn(1, 1, 8, 8)
    t = torch.tensor([5])
    unet = train.UNet(ch=(8, 8, 16), temb_in=16, temb=32)
    # non-trivial norm affines, as after training
    with torch.no_grad():
        for m in unet.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    export(unet, "tiny_unet.onnx", (x8, t), ["x", "t"])
    export(OnlyX(), "one_input.onnx", (x8,), ["x"])
    export(WithT(), "dynamic_hw.onnx", (x8, t), ["x", "t"], {"x": {2: "h", 3: "w"}, "eps": {2: "h", 3: "w"}})
    export(WithT(nn.Tanh()), "unsupported.onnx", (x8, t), ["x", "t"])
    bad = WithT()
    with torch.no_grad():
        bad.conv.weight[0, 0, 1, 1] = float("nan")
    export(bad, "nan_weights.onnx", (x8, t), ["x", "t"])


if __name__ == "__main__":
    main()
