#!/usr/bin/python3
"""PyTorch side of the CPU training benchmark (bench/train_throughput.cpp is the engine side).

Same config, batch and step as moe-bench-train: forward, backward, clip_grad_norm_(1.0),
torch.optim.AdamW(betas=(0.9, 0.95), weight_decay=0.1 on matrices only, as the engine),
fp32, torch.set_num_threads(N), no MTP. Prints tokens/s (B*T / seconds per step), median and
best of --steps steps after --warmup, and a last line "BENCH key=value ..." for scripts.

Model code: tests/reference/deepseek_v3_ref.py (the independent reference the engine is tested
against) for attention, SwiGLU, the router, norms and RoPE. Its MoE layer is replaced here by
the usual eager "sort by expert" dispatch: one gather of the routed rows in expert order, each
expert on its contiguous slice, one weighted index_add_ back. The reference's own loop
(nonzero + out-of-place index_add per expert) is written for clarity, not speed.

torch.compile does not exist in torch 1.13 (Debian's build), so this is eager mode only.
Run with Debian's /usr/bin/python3 (the first python3 on PATH has no torch).
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import deepseek_v3_ref as ref  # noqa: E402


def init_params(cfg, seed):
    """N(0, initializer_range) matrices, norm weights 1, selection bias 0 (as Model::init_weights)."""
    g = torch.Generator().manual_seed(seed)
    std = cfg.raw.get("initializer_range", 0.02)
    p = {}
    for name, shape in ref.tensor_shapes(cfg).items():
        if name in ref.mtp_alias_names(cfg):
            continue
        if name.endswith("e_score_correction_bias"):
            t = torch.zeros(shape)
        elif len(shape) == 1:
            t = torch.ones(shape)
        else:
            t = torch.empty(shape).normal_(0.0, std, generator=g)
        if ref.is_trainable(cfg, name):
            t.requires_grad_(True)
        p[name] = t
    return p


def moe_ffn_sorted(p, pre, cfg, x):
    """DeepSeekMoE with the routed rows grouped by expert. x [B, T, D] -> [B, T, D]."""
    B, T, D = x.shape
    E, K = cfg.n_routed_experts, cfg.num_experts_per_tok
    xf = x.reshape(B * T, D)
    _, idx, w = ref.moe_gate(p, pre, cfg, xf)                      # idx [N, K], w [N, K]
    flat = idx.reshape(-1)
    order = torch.sort(flat, stable=True).indices                   # routed rows by expert
    counts = torch.bincount(flat, minlength=E).tolist()
    tok = order // K                                                # token of each routed row
    xs = xf.index_select(0, tok)                                    # [N*K, D]
    outs = [ref.swiglu(p, pre + f"experts.{e}.", chunk)
            for e, chunk in enumerate(xs.split(counts)) if counts[e] > 0]
    ys = torch.cat(outs) * w.reshape(-1).index_select(0, order)[:, None]
    y = torch.zeros_like(xf).index_add_(0, tok, ys)
    if cfg.n_shared_experts:
        y = y + ref.swiglu(p, pre + "shared_experts.", xf)
    return y.view(B, T, D)


def block(p, layer, cfg, h):
    pre = f"model.layers.{layer}."
    eps = cfg.rms_norm_eps
    h = h + ref.mla_attention(p, pre + "self_attn.", cfg,
                              ref.rms_norm(h, p[pre + "input_layernorm.weight"], eps))
    x = ref.rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
    y = moe_ffn_sorted(p, pre + "mlp.", cfg, x) if cfg.is_moe(layer) else ref.swiglu(p, pre + "mlp.", x)
    return h + y


def loss_fn(p, cfg, seqs):
    """Next-token cross-entropy (no MTP; the bench configs have aux_loss_alpha 0)."""
    B, T = seqs.shape[0], seqs.shape[1] - 1
    h = p["model.embed_tokens.weight"][seqs[:, :T]]
    for l in range(cfg.num_hidden_layers):
        h = block(p, l, cfg, h)
    logits = ref.lm_logits(p, cfg, h, "model.norm.weight")
    loss = F.cross_entropy(logits.reshape(B * T, cfg.vocab_size), seqs[:, 1:].reshape(B * T))
    if cfg.aux_loss_alpha > 0:
        raise SystemExit("aux_loss_alpha > 0 is not supported by this benchmark")
    return loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--foreach", choices=["default", "on", "off"], default="default",
                    help="AdamW's multi-tensor implementation (torch 1.13 default: off)")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's top ops")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    cfg = ref.Config.load(a.config)
    cfg.num_nextn_predict_layers = 0
    p = init_params(cfg, a.seed)
    params = [t for t in p.values() if t.requires_grad]
    # Weight decay on matrices only, as the engine's AdamW.
    groups = [{"params": [t for t in params if t.dim() >= 2], "weight_decay": 0.1},
              {"params": [t for t in params if t.dim() < 2], "weight_decay": 0.0}]
    kw = {} if a.foreach == "default" else {"foreach": a.foreach == "on"}
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **kw)
    g = torch.Generator().manual_seed(a.seed + 1)
    B, T = a.batch, a.seq

    def step(seqs):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(p, cfg, seqs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss)

    n_params = sum(t.numel() for t in params)
    print(f"config {a.config}: {n_params} trainable parameters, batch {B} x seq {T}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    batches = [torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
               for _ in range(a.warmup + a.steps)]
    loss0 = loss = 0.0
    for i in range(a.warmup):
        loss = step(batches[i])
        if i == 0:
            loss0 = loss
    times = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        loss = step(batches[a.warmup + i])
        times.append(time.perf_counter() - t0)
    med, best = statistics.median(times), min(times)
    print(f"loss: first warm-up step {loss0:.4f}, last step {loss:.4f} (ln V = {math.log(cfg.vocab_size):.4f})")
    print(f"step: median {med * 1e3:.1f} ms, best {best * 1e3:.1f} ms")
    print(f"tokens/s: median {B * T / med:.0f}, best {B * T / best:.0f}")
    if a.profile:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(2):
                step(batches[i])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"BENCH tok_s={B * T / med:.1f} tok_s_best={B * T / best:.1f} step_ms={med * 1e3:.2f}")


if __name__ == "__main__":
    main()
