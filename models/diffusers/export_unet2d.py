#!/usr/bin/env python3
"""Export a small diffusers `UNet2DModel` to ONNX, as the converter's second model family.

    python models/diffusers/export_unet2d.py            # writes models/diffusers/unet2d_tiny.onnx

A seeded, randomly initialised UNet2DModel for 1x32x32 images (the layout diffusers'
DDPM pipelines use for 32x32 data: three resolutions, attention at the lowest and in
the mid block; attention at 8x8, so its 4 heads of 64x64 scores fit a
microcontroller's RAM) exported like `models/train.py` exports the shipped UNet: inputs
x f32[1,1,32,32] and t i64[1] (0-based timestep), output eps f32[1,1,32,32], ONNX
opset 17, weights embedded. The exported graph keeps diffusers' own forms: the
flipped cos/sin timestep embedding, GroupNorm on the [B, C, HW] attention input,
multi-head attention through scaled_dot_product_attention, Downsample2D/Upsample2D.
The script checks the ONNX file against PyTorch with onnxruntime when it is installed.
"""
import argparse
import json
import os

import torch
from diffusers import UNet2DModel

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = dict(
    sample_size=32,
    in_channels=1,
    out_channels=1,
    block_out_channels=(16, 16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=8,
)


class EpsOnly(torch.nn.Module):
    """UNet2DModel returns a dataclass; the converter wants the ε tensor."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        return self.unet(x, t).sample


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "unet2d_tiny.onnx"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    unet = UNet2DModel(**CONFIG)
    model = EpsOnly(unet).eval()
    params = sum(p.numel() for p in unet.parameters())
    ex = (torch.zeros(1, 1, 32, 32), torch.tensor([500], dtype=torch.long))
    kw = dict(opset_version=17, input_names=["x", "t"], output_names=["eps"], do_constant_folding=True)
    with torch.no_grad():
        try:
            torch.onnx.export(model, ex, args.out, dynamo=False, **kw)
        except TypeError:
            torch.onnx.export(model, ex, args.out, **kw)
    print(json.dumps({"params": params, "bytes": os.path.getsize(args.out),
                      "torch": torch.__version__, "config": CONFIG}, default=list))
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        return
    sess = ort.InferenceSession(args.out)
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for tv in (0, 500, 999):
        x = torch.randn(1, 1, 32, 32, generator=g)
        t = torch.tensor([tv], dtype=torch.long)
        with torch.no_grad():
            ref = model(x, t).numpy()
        got = sess.run(None, {"x": x.numpy(), "t": t.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    print(f"onnxruntime vs torch: max |d eps| = {worst:.2e}")


if __name__ == "__main__":
    main()
