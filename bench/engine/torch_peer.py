#!/usr/bin/python3
"""The PyTorch peer of engine_bench: the same GPT-2 (learned positions, LayerNorm, tanh GELU,
tied embeddings, fp32), the same batch, context and thread count; a training step is forward,
cross-entropy, backward and AdamW; decoding is batch-1 greedy with a KV cache, as transformers'
GPT-2 does it. Needs Debian's python3-torch. Prints one JSON object.
  torch_peer.py --layers 4 --hidden 256 --heads 4 --context 256 --vocab 50257 --batch 4
                --threads 2 [--train-steps 5] [--decode-tokens 64] [--forward-only]
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x, cache=None):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.h, c // self.h).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        s = (q @ k.transpose(-1, -2)) / math.sqrt(c // self.h)
        tk = k.shape[2]
        mask = torch.ones(t, tk, dtype=torch.bool).tril(diagonal=tk - t)
        s = s.masked_fill(~mask, float("-inf"))
        a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab, c, layers, heads, context):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(context, c)
        self.h = nn.ModuleList(Block(c, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(c)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids, caches=None, start=0):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(start, start + t))
        for i, block in enumerate(self.h):
            x = block(x, None if caches is None else caches[i])
        return self.ln_f(x) @ self.wte.weight.T


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 4), ("hidden", 256), ("heads", 4), ("context", 256),
                          ("vocab", 50257), ("batch", 4), ("threads", 2), ("train-steps", 5),
                          ("decode-tokens", 64)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--forward-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = GPT2(a.vocab, a.hidden, a.layers, a.heads, a.context)
    params = sum(p.numel() for p in model.parameters())
    ids = (torch.arange(a.batch * a.context) * 7919 % a.vocab).view(a.batch, a.context)
    targets = ((torch.arange(a.batch * a.context) * 104729 + 1) % a.vocab).view(-1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def step():
        if a.forward_only:
            with torch.no_grad():
                F.cross_entropy(model(ids).view(-1, a.vocab), targets)
            return
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ids).view(-1, a.vocab), targets)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.train_steps):
        step()
    train = a.batch * a.context * a.train_steps / (time.perf_counter() - t0)

    decode = 0.0
    steps = min(a.decode_tokens, a.context - 17)
    if steps > 0:
        with torch.no_grad():
            caches = [dict() for _ in range(a.layers)]
            logits = model(ids[:1, :16], caches, 0)
            t0 = time.perf_counter()
            for i in range(steps):
                nxt = logits[0, -1].argmax().view(1, 1)
                logits = model(nxt, caches, 16 + i)
            decode = steps / (time.perf_counter() - t0)
    key = "forward_tokens_per_s" if a.forward_only else "train_tokens_per_s"
    print(json.dumps({"impl": "pytorch " + torch.__version__, "params": params, "batch": a.batch,
                      "context": a.context, "threads": a.threads, key: round(train, 1),
                      "decode_tokens_per_s": round(decode, 1)}))


if __name__ == "__main__":
    main()
