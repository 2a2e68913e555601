#!/usr/bin/env python3
"""The PyTorch peer of bench/gpu on the same device, in the same run. One JSON object per line.

  torch_peer.py ops                 the GEMMs (bf16, and fp32 without TF32), attention (SDPA,
                                    flash in bf16), LayerNorm and fused AdamW at gpu_bench's shapes
  torch_peer.py train [--batch 16]  GPT-2 124M, context 1024: bf16 autocast, torch.compile,
                                    flash attention, fused AdamW; tokens/s and MFU
  torch_peer.py decode --save DIR   random GPT-2 124M and a ~1B Llama saved with save_pretrained
                                    under DIR (so the engine decodes the same weights), then
                                    transformers' generate, greedy, at batch 1 and 64

MFU counts nanoGPT's FLOPs per token, 6 N + 12 L C T (no discount for the causal mask), against
the datasheet's dense bf16 rate (989 TFLOP/s for H100 SXM and H200).
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PEAK_BF16 = 989e12


def emit(**row):
    row.setdefault("impl", "pytorch")
    print(json.dumps(row), flush=True)


def time_ms(fn, repeat=20):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(repeat):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / repeat


def ops():
    torch.backends.cuda.matmul.allow_tf32 = False
    tokens, d = 8 * 1024, 768
    for name, m, n, k in [("qkv", tokens, 3 * d, d), ("attn_proj", tokens, d, d),
                          ("fc", tokens, 4 * d, d), ("mlp_proj", tokens, d, 4 * d),
                          ("lm_head", tokens, 50304, d)]:
        for dtype, tag in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]:
            a = torch.randn(m, k, device="cuda", dtype=dtype)
            b = torch.randn(k, n, device="cuda", dtype=dtype)
            ms = time_ms(lambda: a @ b)
            emit(op=f"gemm_{tag}_{name}", shape=f"{m}x{n}x{k}", ms=ms,
                 tflops=2 * m * n * k / ms / 1e9)
    q, k, v = (torch.randn(8, 12, 1024, 64, device="cuda", requires_grad=True) for _ in range(3))
    causal = 0.5 * 8 * 12 * 1024 * 1024 * 64
    for dtype, tag in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]:
        qq, kk, vv = (t.detach().to(dtype).requires_grad_() for t in (q, k, v))
        out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
        g = torch.randn_like(out)
        fwd = time_ms(lambda: F.scaled_dot_product_attention(qq, kk, vv, is_causal=True))
        emit(op=f"attention_fwd_{tag}", shape="8x12x1024x64", ms=fwd, tflops=4 * causal / fwd / 1e9)

        def fwd_bwd():
            o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
            torch.autograd.grad(o, (qq, kk, vv), g)
        both = time_ms(fwd_bwd)
        emit(op=f"attention_bwd_{tag}", shape="8x12x1024x64", ms=both - fwd,
             tflops=10 * causal / (both - fwd) / 1e9)
    x = torch.randn(tokens, d, device="cuda")
    ln = nn.LayerNorm(d).cuda()
    with torch.no_grad():
        ms = time_ms(lambda: ln(x))
    emit(op="layernorm_fwd_fp32", shape="8192x768", ms=ms, gbps=8 * tokens * d / ms / 1e6)
    p = torch.zeros(124_475_904, device="cuda", requires_grad=True)
    p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW([p], lr=1e-4, fused=True)
    ms = time_ms(opt.step)
    emit(op="adamw_fp32", shape="124M", ms=ms, gbps=28 * p.numel() / ms / 1e6)


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(a.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab=50304, c=768, layers=12, heads=12, context=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(context, c)
        self.h = nn.ModuleList(Block(c, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(c)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def train(batch, steps):
    torch.backends.cuda.matmul.allow_tf32 = True
    model = GPT2().cuda()
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=True)
    step_fn = torch.compile(model)
    ids = torch.randint(0, 50257, (batch, 1024), device="cuda")
    tgt = torch.randint(0, 50257, (batch, 1024), device="cuda")

    def one():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(ids, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t0 = time.time()
    for _ in range(3):  # compile and warm up
        one()
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    ms = time_ms(one, repeat=steps)
    tokens_per_s = batch * 1024 / (ms / 1e3)
    flops_per_token = 6 * n + 12 * 12 * 768 * 1024
    emit(op="train_gpt2_124m", batch=batch, context=1024, parameters=n, ms_per_step=ms,
         tokens_per_s=tokens_per_s, mfu=tokens_per_s * flops_per_token / PEAK_BF16,
         compile_s=compile_s)


def decode(save, tokens):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    models = {
        "gpt2-124m": GPT2LMHeadModel(GPT2Config()),
        "llama-1b": LlamaForCausalLM(LlamaConfig(
            vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
            num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
            tie_word_embeddings=False)),
    }
    for name, model in models.items():
        path = os.path.join(save, name)
        model.save_pretrained(path, safe_serialization=True)
        n = sum(p.numel() for p in model.parameters())
        for dtype, tag in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]:
            m = model.to("cuda", dtype).eval()
            for batch in (1, 64):
                ids = torch.randint(0, m.config.vocab_size, (batch, 16), device="cuda")
                kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                          pad_token_id=0)
                m.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)  # warm-up
                torch.cuda.synchronize()
                t0 = time.time()
                m.generate(ids, **kw)
                torch.cuda.synchronize()
                s = time.time() - t0
                weight_bytes = n * (4 if dtype == torch.float32 else 2)
                emit(op="decode", model=path, dtype=tag, batch=batch, parameters=n,
                     tokens_per_s=batch * tokens / s, weight_bytes=weight_bytes)
        model.to("cpu")
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["ops", "train", "decode"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--save", default="/tmp/mh-gpu-models")
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    emit(device=torch.cuda.get_device_name(0), torch=torch.__version__)
    if a.what == "ops":
        ops()
    elif a.what == "train":
        train(a.batch, a.steps)
    else:
        decode(a.save, a.tokens)


if __name__ == "__main__":
    main()
