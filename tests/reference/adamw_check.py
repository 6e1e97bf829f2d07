#!/usr/bin/python3
"""torch.optim.AdamW reference for tests/tst_optim.cpp.

Usage: adamw_check.py IN.txt OUT.txt

IN.txt is whitespace-separated numbers:
    steps n_params beta1 beta2 eps weight_decay
    per parameter: numel decay(0|1) then numel initial values
    per step: lr grad_scale, then for each parameter numel gradient values
The gradient torch sees is grad_scale * grad (rounded to float32, as the engine does).
Parameters with decay 0 sit in a param group with weight_decay 0 (the engine's norm weights).

OUT.txt: for each parameter, its numel final values, then exp_avg, then exp_avg_sq.
Exit code 3 when torch cannot be imported (the C++ test skips then).
"""
import sys

try:
    import torch
except ImportError:
    sys.exit(3)


def main(inp, out):
    tok = open(inp).read().split()
    pos = 0

    def take(k):
        nonlocal pos
        vals = tok[pos:pos + k]
        pos += k
        return vals

    steps, n_params = int(take(1)[0]), int(take(1)[0])
    beta1, beta2, eps, wd = (float(x) for x in take(4))
    params, decays = [], []
    for _ in range(n_params):
        numel, decay = int(take(1)[0]), int(take(1)[0])
        values = [float(x) for x in take(numel)]
        params.append(torch.tensor(values, dtype=torch.float32, requires_grad=True))
        decays.append(decay)
    groups = [
        {"params": [p for p, d in zip(params, decays) if d], "weight_decay": wd},
        {"params": [p for p, d in zip(params, decays) if not d], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=1.0, betas=(beta1, beta2), eps=eps)
    for _ in range(steps):
        lr, scale = (float(x) for x in take(2))
        for p in params:
            g = torch.tensor([float(x) for x in take(p.numel())], dtype=torch.float32)
            p.grad = g * torch.tensor(scale, dtype=torch.float32)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
    assert pos == len(tok), "trailing input"
    with open(out, "w") as f:
        for p in params:
            st = opt.state[p]
            for t in (p.detach(), st["exp_avg"], st["exp_avg_sq"]):
                f.write(" ".join(repr(float(x)) for x in t.tolist()) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
