#!/usr/bin/python3
"""PyTorch peers of the GPU benchmarks (docs/performance.md, "GPU speed"), written the way a user
would write them instead of using the engine: torchtitan-style DeepSeek-V3 modules, experts as
stacked weights run through torch._grouped_mm, attention through F.scaled_dot_product_attention,
bf16 autocast, fused AdamW, gradient clipping, eager or torch.compile.

Parts (--part):
  model  the whole model of a project file (e.g. projects/small-gpu.json), MTP off: embedding,
         MLA (q and kv LoRA, interleaved RoPE), DeepSeekMoE (sigmoid gate with a selection bias,
         group-limited top-k, normalized and scaled weights, shared experts, aux-loss-free bias
         update), dense first layers, LM head; cross-entropy on random tokens.
  block  the block of moe-bench-gpu: pre-norm attention (H heads of hd, q/k/v/o projections,
         RoPE, causal) then a routed MoE FFN (no shared expert); loss 0.5 * ||y||^2.
  moe    the routed MoE feed-forward alone on B*T tokens (router, dispatch, experts, combine).

--experts grouped uses torch._grouped_mm (PyTorch >= 2.8, bf16, a Hopper GPU), with each
expert's rows padded to a multiple of 16 on the device (no host sync); --experts loop runs one
matmul per expert (what a first version does). --check compares the two on the first batch.
Without torch._grouped_mm or F.scaled_dot_product_attention (Debian's torch 1.13) the script
falls back to the loop and to explicit attention, and says so: that is how the test suite runs
it on a CPU (tests/CMakeLists.txt, test "peers"), to prove it runs, not to time it.

Prints "PEER part=... tokens_per_s=... step_ms=... mfu=..." per run. Run with /usr/bin/python3
here (Debian's torch), python3 on the GPU machine.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_GROUPED_MM = hasattr(torch, "_grouped_mm")
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
ALIGN = 16  # rows per expert for torch._grouped_mm


# ---------------------------------------------------------------------------------------------
# building blocks

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rope_tables(rope_dim, seq, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, rope_dim, 2, device=device, dtype=torch.float32) / rope_dim))
    ang = torch.outer(torch.arange(seq, device=device, dtype=torch.float32), inv)
    return torch.polar(torch.ones_like(ang), ang)  # [T, rope_dim/2] complex


def apply_rope(x, freqs):
    """DeepSeek's interleaved convention: pairs (x[2i], x[2i+1]). x [B, T, H, r]."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    y = torch.view_as_real(xc * freqs[None, :, None, :]).flatten(-2)
    return y.to(x.dtype)


def attention(q, k, v, scale):
    """q, k [B, T, H, dk], v [B, T, H, dv] -> [B, T, H, dv], causal."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if HAS_SDPA:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        s = (q @ k.transpose(-1, -2)).float() * scale
        T = s.shape[-1]
        mask = torch.ones(T, T, dtype=torch.bool, device=s.device).triu(1)
        o = (s.masked_fill(mask, float("-inf")).softmax(-1).to(v.dtype)) @ v
    return o.transpose(1, 2)


class Mla(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, H = c["hidden_size"], c["num_attention_heads"]
        self.H, self.dn, self.dr, self.dv = H, c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.qr, self.kr = c.get("q_lora_rank") or 0, c["kv_lora_rank"]
        dqk = self.dn + self.dr
        if self.qr:
            self.wq_a = nn.Linear(D, self.qr, bias=False)
            self.q_norm = RMSNorm(self.qr, c.get("rms_norm_eps", 1e-6))
            self.wq_b = nn.Linear(self.qr, H * dqk, bias=False)
        else:
            self.wq = nn.Linear(D, H * dqk, bias=False)
        self.wkv_a = nn.Linear(D, self.kr + self.dr, bias=False)
        self.kv_norm = RMSNorm(self.kr, c.get("rms_norm_eps", 1e-6))
        self.wkv_b = nn.Linear(self.kr, H * (self.dn + self.dv), bias=False)
        self.wo = nn.Linear(H * self.dv, D, bias=False)
        self.scale = dqk ** -0.5

    def forward(self, x, freqs):
        B, T, _ = x.shape
        q = self.wq_b(self.q_norm(self.wq_a(x))) if self.qr else self.wq(x)
        q = q.view(B, T, self.H, self.dn + self.dr)
        q_nope, q_pe = q.split([self.dn, self.dr], -1)
        kv = self.wkv_a(x)
        c_kv, k_pe = kv.split([self.kr, self.dr], -1)
        k_pe = apply_rope(k_pe.unsqueeze(2), freqs)
        kv = self.wkv_b(self.kv_norm(c_kv)).view(B, T, self.H, self.dn + self.dv)
        k_nope, v = kv.split([self.dn, self.dv], -1)
        q = torch.cat([q_nope, apply_rope(q_pe, freqs)], -1)
        k = torch.cat([k_nope, k_pe.expand(-1, -1, self.H, -1)], -1)
        o = attention(q, k, v, self.scale)
        return self.wo(o.reshape(B, T, self.H * self.dv))


class Mha(nn.Module):
    """Plain multi-head attention of moe-bench-gpu's block (q, k, v, o; RoPE on all of q, k)."""

    def __init__(self, D, H, hd):
        super().__init__()
        self.H, self.hd = H, hd
        self.wq, self.wk, self.wv = (nn.Linear(D, H * hd, bias=False) for _ in range(3))
        self.wo = nn.Linear(H * hd, D, bias=False)

    def forward(self, x, freqs):
        B, T, _ = x.shape
        q, k, v = (w(x).view(B, T, self.H, self.hd) for w in (self.wq, self.wk, self.wv))
        o = attention(apply_rope(q, freqs), apply_rope(k, freqs), v, self.hd ** -0.5)
        return self.wo(o.reshape(B, T, self.H * self.hd))


class FeedForward(nn.Module):
    def __init__(self, D, F_):
        super().__init__()
        self.w1, self.w3 = nn.Linear(D, F_, bias=False), nn.Linear(D, F_, bias=False)
        self.w2 = nn.Linear(F_, D, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Moe(nn.Module):
    """DeepSeekMoE: experts as stacked weights [E, F, D] (torchtitan's GroupedExperts)."""

    def __init__(self, D, c, experts_mode, shared=True):
        super().__init__()
        self.E, self.K = c["n_routed_experts"], c["num_experts_per_tok"]
        self.n_group, self.topk_group = c.get("n_group", 1), c.get("topk_group", 1)
        self.scale = c.get("routed_scaling_factor", 1.0)
        self.norm = c.get("norm_topk_prob", True)
        Fm = c["moe_intermediate_size"]
        self.gate = nn.Linear(D, self.E, bias=False)
        self.register_buffer("bias", torch.zeros(self.E))
        self.w1 = nn.Parameter(torch.empty(self.E, Fm, D))
        self.w3 = nn.Parameter(torch.empty(self.E, Fm, D))
        self.w2 = nn.Parameter(torch.empty(self.E, D, Fm))
        n_shared = c.get("n_shared_experts", 0) if shared else 0
        self.shared = FeedForward(D, n_shared * Fm) if n_shared else None
        self.experts_mode = experts_mode
        self.counts = None

    def route(self, x):
        scores = torch.sigmoid(self.gate(x).float())
        sel = scores + self.bias
        if self.n_group > 1:
            g = sel.view(-1, self.n_group, self.E // self.n_group).topk(2, -1).values.sum(-1)
            keep = torch.zeros_like(g).scatter_(1, g.topk(self.topk_group, -1).indices, 1.0)
            mask = keep.repeat_interleave(self.E // self.n_group, 1) == 0
            sel = sel.masked_fill(mask, float("-inf"))
        idx = sel.topk(self.K, -1).indices
        w = scores.gather(1, idx)
        if self.norm:
            w = w / w.sum(-1, keepdim=True)
        return idx, w * self.scale

    def experts(self, xs, counts, mode):
        """xs: routed rows sorted by expert; counts [E] on the device."""
        if mode == "grouped":
            # Pad each expert's rows to a multiple of ALIGN, all on the device.
            N = xs.shape[0]
            padded = (counts + ALIGN - 1) // ALIGN * ALIGN
            start = torch.cumsum(counts, 0) - counts
            pstart = torch.cumsum(padded, 0) - padded
            expert_of_row = torch.repeat_interleave(torch.arange(self.E, device=xs.device), counts,
                                                    output_size=N)
            dest = pstart[expert_of_row] + torch.arange(N, device=xs.device) - start[expert_of_row]
            buf = xs.new_zeros(N + ALIGN * self.E, xs.shape[1])
            buf[dest] = xs
            offs = torch.cumsum(padded, 0).to(torch.int32)
            dt = torch.bfloat16
            b = buf.to(dt)
            h = F.silu(torch._grouped_mm(b, self.w1.to(dt).transpose(-2, -1), offs=offs)) * \
                torch._grouped_mm(b, self.w3.to(dt).transpose(-2, -1), offs=offs)
            y = torch._grouped_mm(h, self.w2.to(dt).transpose(-2, -1), offs=offs)
            return y[dest].to(xs.dtype)
        # Loop: one matmul chain per expert on its contiguous slice (sizes read on the host).
        out = torch.empty_like(xs)
        sizes = counts.tolist()
        r0 = 0
        for e, m in enumerate(sizes):
            if m:
                xe = xs[r0:r0 + m]
                h = F.silu(xe @ self.w1[e].t()) * (xe @ self.w3[e].t())
                out[r0:r0 + m] = h @ self.w2[e].t()
            r0 += m
        return out

    def forward(self, x, mode=None):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        idx, w = self.route(x)
        flat = idx.flatten()
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.E)
        self.counts = counts.detach()
        token = order // self.K
        ys = self.experts(x[token], counts, mode or self.experts_mode)
        y = torch.zeros_like(x)
        y.index_add_(0, token, ys * w.flatten()[order, None].to(ys.dtype))
        if self.shared is not None:
            y = y + self.shared(x)
        return y.view(shape)

    @torch.no_grad()
    def update_bias(self, gamma):
        if self.counts is not None:
            c = self.counts.float()
            self.bias += gamma * torch.sign(c.mean() - c)


class Block(nn.Module):
    def __init__(self, attn, ffn, D, eps):
        super().__init__()
        self.attn, self.ffn = attn, ffn
        self.n1, self.n2 = RMSNorm(D, eps), RMSNorm(D, eps)

    def forward(self, x, freqs):
        x = x + self.attn(self.n1(x), freqs)
        return x + self.ffn(self.n2(x))


class Model(nn.Module):
    def __init__(self, c, experts_mode):
        super().__init__()
        D, eps = c["hidden_size"], c.get("rms_norm_eps", 1e-6)
        self.c = c
        self.embed = nn.Embedding(c["vocab_size"], D)
        layers = []
        for l in range(c["num_hidden_layers"]):
            dense = l < c.get("first_k_dense_replace", 0) or c["n_routed_experts"] == 0
            ffn = FeedForward(D, c["intermediate_size"]) if dense else Moe(D, c, experts_mode)
            layers.append(Block(Mla(c), ffn, D, eps))
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(D, eps)
        self.head = nn.Linear(D, c["vocab_size"], bias=False)

    def forward(self, tokens, freqs):
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h, freqs)
        return self.head(self.norm(h))

    def moe_layers(self):
        return [l.ffn for l in self.layers if isinstance(l.ffn, Moe)]


def init_(module, std):
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, 0.0, std)


# ---------------------------------------------------------------------------------------------
# FLOPs (matmuls and attention; elementwise work not counted, as moe-bench-gpu)

def model_flops_per_token(c, T):
    D, H = c["hidden_size"], c["num_attention_heads"]
    dn, dr, dv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    qr, kr = c.get("q_lora_rank") or 0, c["kv_lora_rank"]
    attn = (D * qr + qr * H * (dn + dr) if qr else D * H * (dn + dr)) + D * (kr + dr) + \
        kr * H * (dn + dv) + H * dv * D
    attn_scores = H * (dn + dr + dv) * (T + 1) / 2  # causal average
    Fm, E, K = c["moe_intermediate_size"], c["n_routed_experts"], c["num_experts_per_tok"]
    moe = 3 * D * Fm * (K + c.get("n_shared_experts", 0)) + D * E
    dense = 3 * D * c["intermediate_size"]
    L, k = c["num_hidden_layers"], c.get("first_k_dense_replace", 0)
    per_layer = lambda ffn: 2 * (attn + ffn) + 2 * attn_scores
    fwd = k * per_layer(dense) + (L - k) * per_layer(moe) + 2 * D * c["vocab_size"]
    return 3 * fwd


def block_flops_per_token(D, H, hd, E, K, Fm, T):
    fwd = 2 * (4 * D * H * hd + D * E + 3 * D * Fm * K) + 2 * H * 2 * hd * (T + 1) / 2
    return 3 * fwd


# ---------------------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    mode = args.experts
    notes = []
    if mode == "grouped" and not (HAS_GROUPED_MM and device.type == "cuda"):
        notes.append("no torch._grouped_mm here: experts loop")
        mode = "loop"
    if not HAS_SDPA:
        notes.append("no scaled_dot_product_attention here: explicit attention")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    B, T = args.batch, args.seq
    if args.part == "model":
        with open(args.project) as f:
            c = json.load(f)["model"]
        if c.get("sliding_window"):
            raise SystemExit("torch_peer: sliding_window is not written here")
        net = Model(c, mode).to(device)
        init_(net, c.get("initializer_range", 0.02))
        freqs = rope_tables(c["qk_rope_head_dim"], T, c.get("rope_theta", 10000.0), device)
        flops = model_flops_per_token(c, T)
        vocab = c["vocab_size"]

        def loss_fn(batch):
            tokens, targets = batch
            logits = net(tokens, freqs)
            return F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))

        def make_batch():
            t = torch.randint(0, vocab, (B, T + 1), device=device)
            return t[:, :-1], t[:, 1:]
        moe_layers = net.moe_layers()
    elif args.part == "block":
        c = {"n_routed_experts": args.experts_n, "num_experts_per_tok": args.topk,
             "moe_intermediate_size": args.ffn, "n_group": 1, "topk_group": 1,
             "routed_scaling_factor": 1.0, "norm_topk_prob": True}
        net = Block(Mha(args.dim, args.heads, args.head_dim), Moe(args.dim, c, mode, shared=False),
                    args.dim, 1e-6).to(device)
        init_(net, 0.02)
        freqs = rope_tables(args.head_dim, T, 10000.0, device)
        flops = block_flops_per_token(args.dim, args.heads, args.head_dim, args.experts_n, args.topk,
                                      args.ffn, T)

        def loss_fn(x):
            return 0.5 * net(x, freqs).float().pow(2).sum() / (B * T)

        def make_batch():
            return torch.randn(B, T, args.dim, device=device)
        moe_layers = [net.ffn]
    else:  # moe
        c = {"n_routed_experts": args.experts_n, "num_experts_per_tok": args.topk,
             "moe_intermediate_size": args.ffn, "n_group": 1, "topk_group": 1,
             "routed_scaling_factor": 1.0, "norm_topk_prob": True}
        net = Moe(args.dim, c, mode, shared=False).to(device)
        init_(net, 0.02)
        flops = 3 * 2 * (3 * args.dim * args.ffn * args.topk + args.dim * args.experts_n)

        def loss_fn(x):
            return 0.5 * net(x).float().pow(2).sum() / (B * T)

        def make_batch():
            return torch.randn(B * T, args.dim, device=device)
        moe_layers = [net]

    if args.check and mode == "grouped":
        ref_layer = moe_layers[0]
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            inp = torch.randn(B * T, ref_layer.w1.shape[2], device=device)
            a = ref_layer(inp, mode="grouped").float()
            b = ref_layer(inp, mode="loop").float()
        err = ((a - b).norm() / b.norm()).item()
        print(f"CHECK grouped vs loop experts: relative error {err:.2e} (bf16)", flush=True)

    fused = device.type == "cuda"
    try:
        opt = torch.optim.AdamW(net.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                fused=fused)
    except TypeError:  # torch 1.13: no fused AdamW
        opt = torch.optim.AdamW(net.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
        notes.append("no fused AdamW here")
    step_fn = loss_fn
    if args.compile:
        if not hasattr(torch, "compile"):
            raise SystemExit("torch_peer: torch.compile needs PyTorch >= 2.0")
        step_fn = torch.compile(loss_fn)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = step_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        for m in moe_layers:
            m.update_bias(1e-3)
        return loss

    batches = [make_batch() for _ in range(2)]
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        loss = step(batches[i % 2])
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    if not all(math.isfinite(l) for l in losses):
        raise SystemExit(f"torch_peer: non-finite loss {losses}")
    med = statistics.median(times)
    tps = B * T / med
    mfu = tps * flops / (args.peak_tflops * 1e12) * 100 if args.peak_tflops > 0 else float("nan")
    name = f"{args.part}-{mode}-{args.dtype}" + ("-compile" if args.compile else "-eager")
    print(f"PEER part={args.part} name={name} device={device} B={B} T={T} step_ms={med * 1e3:.2f} "
          f"tokens_per_s={tps:.0f} gflop_per_token={flops / 1e9:.4f} mfu={mfu:.2f}% "
          f"loss_first={losses[0]:.6g} loss_last={losses[-1]:.6g}"
          + (f" notes={'; '.join(notes)!r}" if notes else ""), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["model", "block", "moe"], default="model")
    p.add_argument("--project", default="projects/small-gpu.json", help="for --part model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--experts", choices=["grouped", "loop"], default="grouped")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in fp32 matmuls")
    p.add_argument("--check", action="store_true", help="grouped vs loop experts on one batch")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--experts-n", type=int, default=64)
    p.add_argument("--topk", type=int, default=6)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="for the MFU")
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
