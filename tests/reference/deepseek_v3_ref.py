#!/usr/bin/python3
"""Independent PyTorch reference of a DeepSeek-V3-style MoE transformer.

Written from /work/shared/docs/deepseek-v3-spec.md plus the conventions listed in
tests/reference/README.md; it shares no code with the C++ engine. Plain functions over a
dict of parameters keyed by their HF checkpoint names, so gradients map 1:1 to names.

Notation in shape comments: B batch, T sequence length, D hidden_size, H heads,
V vocab, E routed experts, K experts per token, N = B*T tokens.

Subcommands: forward, logits, make-checkpoint, make-batch (see --help).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


# ----------------------------------------------------------------------------- config

class Config:
    """The HF DeepseekV3Config fields this reference uses (with HF defaults)."""

    DEFAULTS = dict(
        vocab_size=129280, hidden_size=7168, intermediate_size=18432,
        moe_intermediate_size=2048, num_hidden_layers=61, first_k_dense_replace=3,
        num_attention_heads=128, n_routed_experts=256, n_shared_experts=1,
        num_experts_per_tok=8, n_group=8, topk_group=4, routed_scaling_factor=2.5,
        norm_topk_prob=True, scoring_func="sigmoid", topk_method="noaux_tc",
        aux_loss_alpha=0.0, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
        qk_rope_head_dim=64, v_head_dim=128, num_nextn_predict_layers=0,
        rope_theta=10000.0, rms_norm_eps=1e-6, seq_aux=True, sliding_window=0,
        rope_scaling=None, index_topk=0, index_n_heads=4, index_head_dim=32,
    )
    # HF writes `q_lora_rank: null` for "no low-rank q path" and `sliding_window: null` for full
    # attention; null elsewhere means the default.
    NULL_MEANS = dict(q_lora_rank=0, sliding_window=0)

    def __init__(self, d):
        for k, v in self.DEFAULTS.items():
            val = d.get(k, v)
            setattr(self, k, self.NULL_MEANS.get(k, v) if val is None else val)
        self.raw = dict(d)
        assert self.scoring_func in ("sigmoid", "softmax"), self.scoring_func
        assert self.topk_method in ("noaux_tc", "greedy", "group_limited_greedy"), self.topk_method
        if self.n_routed_experts > 0:
            E, G = self.n_routed_experts, max(1, self.n_group)
            assert E % G == 0, "n_routed_experts must be a multiple of n_group"
            kept = E if G == 1 else self.topk_group * (E // G)
            assert self.num_experts_per_tok <= kept, "top-k larger than the experts of the kept groups"

    @staticmethod
    def load(path):
        with open(path) as f:
            return Config(json.load(f))

    @property
    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def has_bias(self):
        return self.topk_method == "noaux_tc"

    def is_moe(self, layer):
        """Main layers 0..L-1 and MTP layers L..L+D-1 follow the same rule."""
        return self.n_routed_experts > 0 and layer >= self.first_k_dense_replace


# ----------------------------------------------------------------------------- names / shapes

def mtp_alias_names(cfg):
    """Checkpoint copies of the shared embedding / head inside each MTP layer (not parameters)."""
    out = []
    for k in range(1, cfg.num_nextn_predict_layers + 1):
        p = f"model.layers.{cfg.num_hidden_layers + k - 1}."
        out += [p + "embed_tokens.weight", p + "shared_head.head.weight"]
    return out


def tensor_shapes(cfg):
    """Every tensor of the HF layout -> shape (MTP alias copies included)."""
    D, H, V = cfg.hidden_size, cfg.num_attention_heads, cfg.vocab_size
    s = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,), "lm_head.weight": (V, D)}

    def block(p, layer):
        s[p + "input_layernorm.weight"] = (D,)
        s[p + "post_attention_layernorm.weight"] = (D,)
        a = p + "self_attn."
        if cfg.q_lora_rank:
            s[a + "q_a_proj.weight"] = (cfg.q_lora_rank, D)
            s[a + "q_a_layernorm.weight"] = (cfg.q_lora_rank,)
            s[a + "q_b_proj.weight"] = (H * cfg.qk_head_dim, cfg.q_lora_rank)
        else:
            s[a + "q_proj.weight"] = (H * cfg.qk_head_dim, D)
        s[a + "kv_a_proj_with_mqa.weight"] = (cfg.kv_lora_rank + cfg.qk_rope_head_dim, D)
        s[a + "kv_a_layernorm.weight"] = (cfg.kv_lora_rank,)
        s[a + "kv_b_proj.weight"] = (H * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank)
        s[a + "o_proj.weight"] = (D, H * cfg.v_head_dim)
        if cfg.index_topk:
            HI, dI = cfg.index_n_heads, cfg.index_head_dim
            if cfg.q_lora_rank:
                s[a + "indexer.wq_b.weight"] = (HI * dI, cfg.q_lora_rank)
            else:
                s[a + "indexer.wq.weight"] = (HI * dI, D)
            s[a + "indexer.wk.weight"] = (dI, D)
            s[a + "indexer.weights_proj.weight"] = (HI, D)
        m = p + "mlp."
        if cfg.is_moe(layer):
            E, I = cfg.n_routed_experts, cfg.moe_intermediate_size
            s[m + "gate.weight"] = (E, D)
            if cfg.has_bias:
                s[m + "gate.e_score_correction_bias"] = (E,)
            for e in range(E):
                s[m + f"experts.{e}.gate_proj.weight"] = (I, D)
                s[m + f"experts.{e}.up_proj.weight"] = (I, D)
                s[m + f"experts.{e}.down_proj.weight"] = (D, I)
            if cfg.n_shared_experts:
                Is = cfg.n_shared_experts * I
                s[m + "shared_experts.gate_proj.weight"] = (Is, D)
                s[m + "shared_experts.up_proj.weight"] = (Is, D)
                s[m + "shared_experts.down_proj.weight"] = (D, Is)
        else:
            I = cfg.intermediate_size
            s[m + "gate_proj.weight"] = (I, D)
            s[m + "up_proj.weight"] = (I, D)
            s[m + "down_proj.weight"] = (D, I)

    for l in range(cfg.num_hidden_layers):
        block(f"model.layers.{l}.", l)
    for k in range(1, cfg.num_nextn_predict_layers + 1):
        l = cfg.num_hidden_layers + k - 1
        p = f"model.layers.{l}."
        s[p + "enorm.weight"] = (D,)
        s[p + "hnorm.weight"] = (D,)
        s[p + "eh_proj.weight"] = (D, 2 * D)
        s[p + "shared_head.norm.weight"] = (D,)
        s[p + "embed_tokens.weight"] = (V, D)
        s[p + "shared_head.head.weight"] = (V, D)
        block(p, l)
    return s


def is_trainable(cfg, name):
    """Parameters = everything except the gate bias buffers and the MTP alias copies."""
    return not name.endswith("e_score_correction_bias") and name not in set(mtp_alias_names(cfg))


# ----------------------------------------------------------------------------- checkpoint io

def load_checkpoint(ckpt_dir):
    """config.json + model.safetensors (or shards listed in model.safetensors.index.json)."""
    cfg = Config.load(os.path.join(ckpt_dir, "config.json"))
    index = os.path.join(ckpt_dir, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        for fn in files:
            t, _ = safetensors_io.load(os.path.join(ckpt_dir, fn))
            tensors.update(t)
    else:
        tensors, _ = safetensors_io.load(os.path.join(ckpt_dir, "model.safetensors"))
    need = tensor_shapes(cfg)
    for name, shape in need.items():
        if name in mtp_alias_names(cfg):
            continue  # optional: the model uses the main embedding / head
        if name not in tensors:
            raise KeyError(f"checkpoint lacks {name}")
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(f"{name}: shape {tensors[name].shape}, expected {shape}")
    return cfg, tensors


def to_params(cfg, tensors, dtype, requires_grad=True):
    """numpy dict -> torch dict; trainable ones get requires_grad."""
    p = {}
    for name, arr in tensors.items():
        t = torch.from_numpy(np.asarray(arr, dtype=np.float64)).to(dtype)
        if requires_grad and is_trainable(cfg, name):
            t.requires_grad_(True)
        p[name] = t
    return p


# ----------------------------------------------------------------------------- building blocks

def rms_norm(x, w, eps):
    # x [..., n], w [n]:  w * x / sqrt(mean(x^2) + eps)
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(x, w):
    # x [..., in], w [out, in] -> [..., out]   (no biases anywhere)
    return x @ w.t()


def yarn_m(scale, m):
    """YaRN's magnitude correction 0.1 m ln(s) + 1 (1 for s <= 1)."""
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def rope_frequencies(cfg, r):
    """Per-pair inverse frequencies [r/2] (float64) and the cos/sin multiplier of cfg's RoPE.

    Plain: theta^(-2i/r). YaRN (cfg.rope_scaling type "yarn", DeepSeek's definition): pairs that
    turn more than beta_fast times over the original context keep their frequency, pairs that
    turn fewer than beta_slow times get frequency / factor, with a linear ramp in between; cos
    and sin are scaled by m(factor, mscale) / m(factor, mscale_all_dim).
    """
    base = cfg.rope_theta ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)
    y = cfg.rope_scaling
    if not y or y.get("factor", 1.0) <= 1.0:
        return base, 1.0
    factor = float(y["factor"])
    ctx = float(y.get("original_max_position_embeddings", 4096))

    def turns_to_dim(turns):  # the pair dimension whose wavelength fits `turns` times in ctx
        return r * math.log(ctx / (turns * 2 * math.pi)) / (2 * math.log(cfg.rope_theta))

    lo = max(math.floor(turns_to_dim(float(y.get("beta_fast", 32)))), 0)
    hi = min(math.ceil(turns_to_dim(float(y.get("beta_slow", 1)))), r - 1)
    if hi == lo:
        hi += 0.001
    ramp = ((torch.arange(r // 2, dtype=torch.float64) - lo) / (hi - lo)).clamp(0.0, 1.0)
    inv_freq = base * (1.0 - ramp) + (base / factor) * ramp
    mscale = yarn_m(factor, float(y.get("mscale", 1.0))) / yarn_m(factor, float(y.get("mscale_all_dim", 0.0)))
    return inv_freq, mscale


def softmax_scale(cfg):
    """1/sqrt(qk_head_dim), times m(factor, mscale_all_dim)^2 under YaRN when mscale_all_dim is set."""
    s = 1.0 / math.sqrt(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
    y = cfg.rope_scaling
    if y and y.get("mscale_all_dim"):
        m = yarn_m(float(y["factor"]), float(y["mscale_all_dim"]))
        s *= m * m
    return s


def rope_interleaved(x, theta, inv_freq=None, mscale=1.0):
    """Rotate adjacent pairs (x[2i], x[2i+1]) by angle pos * inv_freq[i] (default
    theta^(-2i/r)), then multiply by mscale.

    x [B, T, ..., r]; position of token t is t (0..T-1 within each sequence).
    """
    T, r = x.shape[1], x.shape[-1]
    if inv_freq is None:
        inv_freq = theta ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)    # [r/2]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]      # [T, r/2]
    shape = [1, T] + [1] * (x.dim() - 3) + [r // 2]
    cos = (ang.cos() * mscale).to(x.dtype).view(shape)
    sin = (ang.sin() * mscale).to(x.dtype).view(shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]                                           # [B, T, ..., r/2]
    o0 = x0 * cos - x1 * sin
    o1 = x0 * sin + x1 * cos
    return torch.stack([o0, o1], dim=-1).flatten(-2)                              # [B, T, ..., r]


def attention_mask(T, window):
    """[T, T] bool, True where query t must not see key s: s > t, or s <= t - window."""
    t = torch.arange(T)[:, None]
    s = torch.arange(T)[None, :]
    masked = s > t
    if window and window > 0:
        masked = masked | (s <= t - window)
    return masked


def indexer_scores(p, pre, cfg, x, cq, inv_freq, mscale):
    """Dynamic sparse attention's indexer (DeepSeek-V3.2's lightning indexer, without its FP8,
    Hadamard rotation and key LayerNorm): I[b, t, s] = sum_j w[t, j] relu(qi[t, j] . ki[s] /
    sqrt(dI)), RoPE on the last qk_rope_head_dim dims of qi and ki; its inputs are detached.
    Returns [B, T, T] with -inf above the diagonal."""
    B, T, _ = x.shape
    HI, dI, dr = cfg.index_n_heads, cfg.index_head_dim, cfg.qk_rope_head_dim
    x = x.detach()
    if cfg.q_lora_rank:
        qi = linear(cq.detach(), p[pre + "indexer.wq_b.weight"])
    else:
        qi = linear(x, p[pre + "indexer.wq.weight"])
    qi = qi.view(B, T, HI, dI)
    qi = torch.cat([qi[..., :dI - dr], rope_interleaved(qi[..., dI - dr:], cfg.rope_theta, inv_freq, mscale)], dim=-1)
    ki = linear(x, p[pre + "indexer.wk.weight"])                                  # [B, T, dI]
    ki = torch.cat([ki[..., :dI - dr], rope_interleaved(ki[..., dI - dr:], cfg.rope_theta, inv_freq, mscale)], dim=-1)
    w = linear(x, p[pre + "indexer.weights_proj.weight"])                         # [B, T, HI]
    pre_act = torch.einsum("btjd,bsd->btjs", qi, ki) / math.sqrt(dI)
    scores = (torch.relu(pre_act) * w[..., None]).sum(2)                          # [B, T, T]
    return scores.masked_fill(attention_mask(T, 0), float("-inf"))


def topk_key_mask(scores, k):
    """[B, T, T] bool, True at the min(k, t+1) causal keys of query t with the largest scores
    (ties: the lower key index, as a stable descending sort orders them)."""
    T = scores.shape[-1]
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep.scatter_(-1, order[..., :min(k, T)], True)
    return keep & ~attention_mask(T, 0)


def indexer_kl(scores, probs, keep):
    """Mean over queries of KL(p || softmax(scores over the kept keys)), p the attention probs
    [B, H, T, T] averaged over heads (a detached target)."""
    p = probs.detach().mean(1)                                                    # [B, T, T]
    logq = torch.log_softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    logp = torch.log(torch.where(p > 0, p, torch.ones_like(p)))
    kl = torch.where(keep & (p > 0), p * (logp - logq), torch.zeros_like(p))
    return kl.sum(-1).mean()


def mla_attention(p, pre, cfg, x, extra=None):
    """Multi-head Latent Attention, naive (non-absorbed) form. x [B, T, D] -> [B, T, D].
    With index_topk, each query attends to the keys its indexer chooses; the indexer's KL loss
    is added to extra["indexer_loss"]."""
    B, T, _ = x.shape
    H, dn, dr, dv = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    eps = cfg.rms_norm_eps
    # queries
    cq = None
    if cfg.q_lora_rank:
        cq = rms_norm(linear(x, p[pre + "q_a_proj.weight"]), p[pre + "q_a_layernorm.weight"], eps)
        q = linear(cq, p[pre + "q_b_proj.weight"])                                # [B, T, H*(dn+dr)]
    else:
        q = linear(x, p[pre + "q_proj.weight"])
    q = q.view(B, T, H, dn + dr)
    q_nope, q_pe = q[..., :dn], q[..., dn:]                                       # [B,T,H,dn], [B,T,H,dr]
    inv_freq, mscale = rope_frequencies(cfg, dr)
    q_pe = rope_interleaved(q_pe, cfg.rope_theta, inv_freq, mscale)
    # keys / values through the compressed latent
    ckv = linear(x, p[pre + "kv_a_proj_with_mqa.weight"])                         # [B, T, kv_lora+dr]
    c, k_pe = ckv[..., :cfg.kv_lora_rank], ckv[..., cfg.kv_lora_rank:]
    k_pe = rope_interleaved(k_pe, cfg.rope_theta, inv_freq, mscale)                            # [B, T, dr] shared by heads
    kv = linear(rms_norm(c, p[pre + "kv_a_layernorm.weight"], eps), p[pre + "kv_b_proj.weight"])
    kv = kv.view(B, T, H, dn + dv)
    k_nope, v = kv[..., :dn], kv[..., dn:]                                        # [B,T,H,dn], [B,T,H,dv]
    k = torch.cat([k_nope, k_pe[:, :, None, :].expand(B, T, H, dr)], dim=-1)     # [B, T, H, dn+dr]
    qf = torch.cat([q_nope, q_pe], dim=-1)                                        # [B, T, H, dn+dr]
    # causal softmax attention; with a sliding window W, query t sees keys t-W < s <= t
    scale = softmax_scale(cfg)
    s = torch.einsum("bthd,bshd->bhts", qf, k) * scale                            # [B, H, T, T]
    mask = attention_mask(T, cfg.sliding_window)
    keep = None
    if cfg.index_topk:
        iscores = indexer_scores(p, pre, cfg, x, cq, inv_freq, mscale)
        keep = topk_key_mask(iscores.detach(), cfg.index_topk)
        mask = mask | ~keep[:, None]                                              # [B, 1, T, T]: every head
    s = s.masked_fill(mask, float("-inf"))
    pr = torch.softmax(s, dim=-1)
    if keep is not None and extra is not None:
        extra["indexer_loss"] = extra.get("indexer_loss", 0) + indexer_kl(iscores, pr, keep)
    o = torch.einsum("bhts,bshd->bthd", pr, v).reshape(B, T, H * dv)              # [B, T, H*dv]
    return linear(o, p[pre + "o_proj.weight"])


def swiglu(p, pre, x):
    # down(silu(gate(x)) * up(x))
    return linear(F.silu(linear(x, p[pre + "gate_proj.weight"])) * linear(x, p[pre + "up_proj.weight"]),
                  p[pre + "down_proj.weight"])


def group_limited_topk(sel, k, n_group, topk_group, has_bias):
    """Indices of the top-k of sel [N, E] after keeping only the best topk_group groups.

    Group score: sum of the top-2 sel of the group when there is a bias, else the group max.
    Returns LongTensor [N, k], ordered by descending (masked) sel. No gradient.
    """
    sel = sel.detach()
    N, E = sel.shape
    if n_group > 1:
        g = sel.view(N, n_group, E // n_group)                                    # [N, G, E/G]
        if has_bias:
            gscore = g.topk(min(2, E // n_group), dim=-1).values.sum(-1)          # [N, G]
        else:
            gscore = g.max(dim=-1).values
        keep = gscore.topk(topk_group, dim=-1).indices                            # [N, topk_group]
        gmask = torch.zeros(N, n_group, dtype=torch.bool).scatter_(1, keep, True)
        emask = gmask[:, :, None].expand(N, n_group, E // n_group).reshape(N, E)
        sel = sel.masked_fill(~emask, float("-inf"))
    return sel.topk(k, dim=-1, sorted=True).indices


def moe_gate(p, pre, cfg, x):
    """Router. x [N, D] -> scores [N, E], topk_idx [N, K] (long), topk_weight [N, K]."""
    logits = linear(x, p[pre + "gate.weight"])                                    # [N, E]
    scores = torch.sigmoid(logits) if cfg.scoring_func == "sigmoid" else torch.softmax(logits, -1)
    sel = scores
    if cfg.has_bias:
        sel = scores + p[pre + "gate.e_score_correction_bias"]                    # bias: selection only
    idx = group_limited_topk(sel, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group, cfg.has_bias)
    w = scores.gather(1, idx)                                                     # unbiased scores [N, K]
    if cfg.norm_topk_prob:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    w = w * cfg.routed_scaling_factor
    return scores, idx, w


def moe_ffn(p, pre, cfg, x):
    """DeepSeekMoE: x [B, T, D] -> y [B, T, D], routing dict."""
    B, T, D = x.shape
    xf = x.reshape(B * T, D)
    scores, idx, w = moe_gate(p, pre, cfg, xf)
    y = torch.zeros_like(xf)
    for e in range(cfg.n_routed_experts):
        tok, slot = (idx == e).nonzero(as_tuple=True)                             # tokens routed to e
        if tok.numel() == 0:
            continue
        out = swiglu(p, pre + f"experts.{e}.", xf[tok])                           # [n_e, D]
        y = y.index_add(0, tok, out * w[tok, slot][:, None])
    if cfg.n_shared_experts:
        y = y + swiglu(p, pre + "shared_experts.", xf)
    return y.view(B, T, D), dict(scores=scores, topk_idx=idx, topk_weight=w)


def balance_loss(cfg, routing, B, T):
    """Sequence-wise balance loss of one MoE layer: alpha / B * sum_b sum_i f_i P_i.
    With seq_aux false, the batch-wise variant: the whole batch counts as one sequence."""
    E, K = cfg.n_routed_experts, cfg.num_experts_per_tok
    if not cfg.seq_aux:
        B, T = 1, B * T
    scores = routing["scores"].view(B, T, E)
    p_i = (scores / scores.sum(-1, keepdim=True)).mean(1)                         # [B, E]
    counts = F.one_hot(routing["topk_idx"].view(B, T * K), E).sum(1)              # [B, E]
    f_i = (E / (K * T)) * counts.to(scores.dtype)                                 # constant
    return cfg.aux_loss_alpha / B * (f_i * p_i).sum()


def block(p, layer, cfg, h, routing_out, extra=None):
    """One transformer layer (MLA + dense FFN or MoE). h [B, T, D]."""
    pre = f"model.layers.{layer}."
    eps = cfg.rms_norm_eps
    h = h + mla_attention(p, pre + "self_attn.", cfg, rms_norm(h, p[pre + "input_layernorm.weight"], eps), extra)
    x = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
    if cfg.is_moe(layer):
        y, r = moe_ffn(p, pre + "mlp.", cfg, x)
        routing_out[layer] = r
    else:
        y = swiglu(p, pre + "mlp.", x)
    return h + y


# ----------------------------------------------------------------------------- model

def main_trunk(p, cfg, tokens, routing, extra=None):
    """tokens [B, T] -> hidden of the last main layer, BEFORE model.norm, [B, T, D]."""
    h = p["model.embed_tokens.weight"][tokens]
    for l in range(cfg.num_hidden_layers):
        h = block(p, l, cfg, h, routing, extra)
    return h


def lm_logits(p, cfg, h, norm_name):
    return linear(rms_norm(h, p[norm_name], cfg.rms_norm_eps), p["lm_head.weight"])  # [B, T, V]


def model_logits(p, cfg, tokens):
    """Inference logits without MTP. tokens [N, L] -> [N, L, V]."""
    return lm_logits(p, cfg, main_trunk(p, cfg, tokens, {}), "model.norm.weight")


def forward_loss(p, cfg, seqs, mtp_lambda=0.3):
    """Full training objective.

    seqs [B, T+1] token ids; inputs seqs[:, :T], targets seqs[:, 1:].
    Returns dict: logits, loss, mtp_loss, aux_loss, total_loss, routing {layer: dict}.
    """
    B, T = seqs.shape[0], seqs.shape[1] - 1
    V = cfg.vocab_size
    routing, extra = {}, {}
    h = main_trunk(p, cfg, seqs[:, :T], routing, extra)                           # [B, T, D]
    logits = lm_logits(p, cfg, h, "model.norm.weight")
    loss = F.cross_entropy(logits.reshape(B * T, V), seqs[:, 1:].reshape(B * T))

    # Multi-token prediction: module k predicts t_{i+k+1} at position i.
    Dm = cfg.num_nextn_predict_layers
    mtp_loss = torch.zeros((), dtype=logits.dtype)
    pos = torch.arange(T)
    h_prev = h
    for k in range(1, Dm + 1):
        l = cfg.num_hidden_layers + k - 1
        pre = f"model.layers.{l}."
        emb_pos = pos + k                                                         # [T]
        emb_tok = torch.where(emb_pos[None, :] <= T, seqs[:, emb_pos.clamp(max=T)],
                              torch.zeros_like(seqs[:, :T]))                      # pad token 0
        e = rms_norm(p["model.embed_tokens.weight"][emb_tok], p[pre + "enorm.weight"], cfg.rms_norm_eps)
        hn = rms_norm(h_prev, p[pre + "hnorm.weight"], cfg.rms_norm_eps)
        hk = linear(torch.cat([e, hn], dim=-1), p[pre + "eh_proj.weight"])        # embedding FIRST
        hk = block(p, l, cfg, hk, routing, extra)
        lk = lm_logits(p, cfg, hk, pre + "shared_head.norm.weight")               # [B, T, V]
        tgt_pos = pos + k + 1
        valid = tgt_pos <= T                                                      # [T]
        if valid.any():
            tgt = seqs[:, tgt_pos[valid]]                                         # [B, n_valid]
            ce = F.cross_entropy(lk[:, valid].reshape(-1, V), tgt.reshape(-1))
            mtp_loss = mtp_loss + ce
        h_prev = hk
    if Dm > 0:
        mtp_loss = mtp_lambda / Dm * mtp_loss

    aux = torch.zeros((), dtype=logits.dtype)
    if cfg.aux_loss_alpha > 0:
        for l in sorted(routing):
            aux = aux + balance_loss(cfg, routing[l], B, T)

    total = loss + mtp_loss + aux
    # Sparse attention: the indexers' KL losses, outside the total (each indexer learns from its
    # own loss, its inputs detached); backward() of total + indexer_loss gives both gradients.
    indexer_loss = extra.get("indexer_loss", torch.zeros((), dtype=logits.dtype))
    return dict(logits=logits, loss=loss, mtp_loss=mtp_loss, aux_loss=aux, total_loss=total,
                indexer_loss=indexer_loss, routing=routing)


# ----------------------------------------------------------------------------- file helpers

def read_token_lines(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append([int(t) for t in line.split()])
    if not rows:
        raise ValueError(f"{path}: no token lines")
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        raise ValueError(f"{path}: lines of different lengths")
    return torch.tensor(rows, dtype=torch.long)


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run_forward(ckpt, batch, out, mtp_lambda=0.3, dtype="float64"):
    cfg, tensors = load_checkpoint(ckpt)
    p = to_params(cfg, tensors, DTYPES[dtype])
    seqs = read_token_lines(batch)
    if int(seqs.max()) >= cfg.vocab_size or int(seqs.min()) < 0:
        raise ValueError("token id out of range")
    r = forward_loss(p, cfg, seqs, mtp_lambda)
    (r["total_loss"] + r["indexer_loss"]).backward()
    res = {"logits": r["logits"].detach().float().numpy()}
    for k in ("loss", "mtp_loss", "aux_loss", "total_loss", "indexer_loss"):
        res[k] = np.array([float(r[k])], dtype=np.float64)
    for name, t in p.items():
        if t.requires_grad:  # unused parameters (never-routed experts) get zero gradients
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            res["grad." + name] = g.detach().float().numpy()
    for l, rt in r["routing"].items():
        res[f"routing.{l}.topk_idx"] = rt["topk_idx"].numpy().astype(np.int32)
        res[f"routing.{l}.topk_weight"] = rt["topk_weight"].detach().float().numpy()
        res[f"routing.{l}.scores"] = rt["scores"].detach().float().numpy()
    safetensors_io.save(out, res, {"format": "pt", "producer": "deepseek_v3_ref.py"})
    return r


def run_logits(ckpt, tokens, out, dtype="float64"):
    cfg, tensors = load_checkpoint(ckpt)
    p = to_params(cfg, tensors, DTYPES[dtype], requires_grad=False)
    with torch.no_grad():
        lg = model_logits(p, cfg, read_token_lines(tokens))
    safetensors_io.save(out, {"logits": lg.float().numpy()}, {"format": "pt"})


def make_checkpoint(config_path, seed, out_dir, bias_scale=0.05):
    with open(config_path) as f:
        raw = json.load(f)
    cfg = Config(raw)
    rng = np.random.default_rng(seed)
    t = {}
    for name, shape in tensor_shapes(cfg).items():
        if name in mtp_alias_names(cfg):
            continue
        if name.endswith("e_score_correction_bias"):
            a = rng.uniform(-bias_scale, bias_scale, size=shape)
        elif name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)                           # non-trivial norms
        elif name.endswith("mlp.gate.weight"):
            a = 0.2 * rng.standard_normal(shape)                                  # non-degenerate routing
        elif ".indexer." in name:
            a = 0.3 * rng.standard_normal(shape)                                  # decisive key choices
        else:
            a = 0.02 * rng.standard_normal(shape)
        t[name] = a.astype(np.float32)
    for k in range(1, cfg.num_nextn_predict_layers + 1):                         # alias copies
        pre = f"model.layers.{cfg.num_hidden_layers + k - 1}."
        t[pre + "embed_tokens.weight"] = t["model.embed_tokens.weight"].copy()
        t[pre + "shared_head.head.weight"] = t["lm_head.weight"].copy()
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(raw, f, indent=1)
    safetensors_io.save(os.path.join(out_dir, "model.safetensors"), t, {"format": "pt"})


def make_batch(vocab, batch, seq, seed, out):
    rng = np.random.default_rng(seed)
    toks = rng.integers(0, vocab, size=(batch, seq + 1))
    with open(out, "w") as f:
        for row in toks:
            f.write(" ".join(str(int(x)) for x in row) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("forward", help="losses, logits, gradients and routing for a batch")
    a.add_argument("--checkpoint", required=True)
    a.add_argument("--batch", required=True, help="lines of T+1 token ids")
    a.add_argument("--out", required=True)
    a.add_argument("--mtp-lambda", type=float, default=0.3)
    a.add_argument("--dtype", choices=list(DTYPES), default="float64")
    a = sub.add_parser("logits", help="inference logits (no MTP, no loss)")
    a.add_argument("--checkpoint", required=True)
    a.add_argument("--tokens", required=True, help="lines of L token ids")
    a.add_argument("--out", required=True)
    a.add_argument("--dtype", choices=list(DTYPES), default="float64")
    a = sub.add_parser("make-checkpoint", help="random HF-layout checkpoint")
    a.add_argument("--config", required=True)
    a.add_argument("--seed", type=int, required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--bias-scale", type=float, default=0.05)
    a = sub.add_parser("make-batch", help="random token lines")
    a.add_argument("--vocab", type=int, required=True)
    a.add_argument("--batch", type=int, required=True)
    a.add_argument("--seq", type=int, required=True)
    a.add_argument("--seed", type=int, required=True)
    a.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if args.cmd == "forward":
        r = run_forward(args.checkpoint, args.batch, args.out, args.mtp_lambda, args.dtype)
        print(f"loss {float(r['loss']):.10f} mtp_loss {float(r['mtp_loss']):.10f} "
              f"aux_loss {float(r['aux_loss']):.10f} total_loss {float(r['total_loss']):.10f}")
    elif args.cmd == "logits":
        run_logits(args.checkpoint, args.tokens, args.out, args.dtype)
    elif args.cmd == "make-checkpoint":
        make_checkpoint(args.config, args.seed, args.out, args.bias_scale)
    elif args.cmd == "make-batch":
        make_batch(args.vocab, args.batch, args.seq, args.seed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
