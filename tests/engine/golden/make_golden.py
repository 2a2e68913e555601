#!/usr/bin/python3
"""Generates the engine's golden files from reference implementations.

Models: tiny gpt2 and llama models with seeded random weights; their logits for fixed token ids
are computed by a PyTorch transcription of Hugging Face transformers' GPT2LMHeadModel and
LlamaForCausalLM forward passes (eager attention, fp32), which is what the engine must agree with.
The other families (llama with each rope_scaling, mistral, qwen2, qwen3, gemma3_text) go through
decoder_forward, a float64 transcription of their transformers modelling code (modeling_llama,
_mistral, _qwen2, _qwen3, _gemma3 and modeling_rope_utils), which also gives each one's greedy
continuation of a prompt.

Tokenizer: a byte-level BPE vocabulary and merge list learned from the text below by this
script's own (naive) trainer, and the token ids of fixed strings as OpenAI's GPT-2 encoder.py
computes them (bytes_to_unicode, the GPT-2 pre-tokenization pattern through the `regex` module,
lowest-rank-first merging).

Needs Debian's python3-torch and python3-regex. Run from the repository root:
    /usr/bin/python3 tests/engine/golden/make_golden.py
It rewrites tests/engine/golden/{gpt2,llama,tokenizer}/; the output is deterministic. Where
`transformers` and `tokenizers` can be imported, it also loads what it wrote with them and checks
that their logits and token ids agree with its own.
"""
import json
import math
import os
import struct

import regex
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def write_safetensors(path, tensors):
    # transformers refuses safetensors files whose metadata does not say "pt".
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def causal_attention(q, k, v):
    # q [B, H, T, D], k/v [B, H, T, D]: softmax(q k^T / sqrt(D) + mask) v, as eager attention.
    t = q.shape[-2]
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32), v)


def gpt2_forward(cfg, p, ids):
    b, t = ids.shape
    c, h = cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][torch.arange(t)]
    for i in range(cfg["n_layer"]):
        pre = f"transformer.h.{i}."
        n = layer_norm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
        qkv = torch.addmm(p[pre + "attn.c_attn.bias"], n.view(-1, c), p[pre + "attn.c_attn.weight"])
        q, k, v = qkv.view(b, t, 3 * c).split(c, dim=2)
        heads = lambda z: z.view(b, t, h, c // h).permute(0, 2, 1, 3)
        a = causal_attention(heads(q), heads(k), heads(v)).permute(0, 2, 1, 3).reshape(b * t, c)
        x = x + torch.addmm(p[pre + "attn.c_proj.bias"], a, p[pre + "attn.c_proj.weight"]).view(b, t, c)
        n = layer_norm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
        f = gelu_new(torch.addmm(p[pre + "mlp.c_fc.bias"], n.view(-1, c), p[pre + "mlp.c_fc.weight"]))
        x = x + torch.addmm(p[pre + "mlp.c_proj.bias"], f, p[pre + "mlp.c_proj.weight"]).view(b, t, c)
    x = layer_norm(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
    return x @ p["transformer.wte.weight"].T


def rms_norm(x, w, eps):
    var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def llama_forward(cfg, p, ids):
    b, t = ids.shape
    c, h, kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = c // h
    eps = cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    freqs = torch.arange(t, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = p["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        n = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (n @ p[pre + "self_attn.q_proj.weight"].T).view(b, t, h, d).transpose(1, 2)
        k = (n @ p[pre + "self_attn.k_proj.weight"].T).view(b, t, kvh, d).transpose(1, 2)
        v = (n @ p[pre + "self_attn.v_proj.weight"].T).view(b, t, kvh, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(h // kvh, dim=1)
        v = v.repeat_interleave(h // kvh, dim=1)
        a = causal_attention(q, k, v).transpose(1, 2).reshape(b, t, h * d)
        x = x + a @ p[pre + "self_attn.o_proj.weight"].T
        n = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = n @ p[pre + "mlp.gate_proj.weight"].T
        up = n @ p[pre + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    return x @ head.T


# --- the llama-derived families, in float64 -----------------------------------------------------

def head_dim_of(cfg):
    default = 256 if cfg["model_type"] == "gemma3_text" else cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg.get("head_dim") or default


def rope_parameters(cfg, d, theta, scaling, seq_len):
    """inv_freq and attention_factor as modeling_rope_utils computes them."""
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv, 1.0
    factor = scaling["factor"]
    if kind == "linear":
        return inv / factor, 1.0
    if kind == "dynamic":
        mp = cfg["max_position_embeddings"]
        seq_len = max(seq_len, mp)
        base = theta * ((factor * seq_len / mp) - (factor - 1)) ** (d / (d - 2))
        return 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d)), 1.0
    if kind == "llama3":
        old = scaling["original_max_position_embeddings"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        original = scaling.get("original_max_position_embeddings") or cfg["max_position_embeddings"]

        def get_mscale(scale, m=1):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0
        attention = scaling.get("attention_factor")
        if attention is None:
            if scaling.get("mscale") and scaling.get("mscale_all_dim"):
                attention = get_mscale(factor, scaling["mscale"]) / get_mscale(factor, scaling["mscale_all_dim"])
            else:
                attention = get_mscale(factor)
        beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

        def correction_dim(rotations):
            return (d * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))
        lo, hi = correction_dim(beta_fast), correction_dim(beta_slow)
        if scaling.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, d - 1)
        if lo == hi:
            hi += 0.001
        ramp = torch.clamp((torch.arange(d // 2, dtype=torch.float64) - lo) / (hi - lo), 0, 1)
        extrapolation = 1 - ramp
        return inv / factor * (1 - extrapolation) + inv * extrapolation, attention
    raise ValueError(kind)


def sliding_layers(cfg):
    n = cfg["num_hidden_layers"]
    if "layer_types" in cfg:
        return [t == "sliding_attention" for t in cfg["layer_types"]]
    kind = cfg["model_type"]
    if kind == "mistral":
        return [cfg.get("sliding_window") is not None] * n
    if kind in ("qwen2", "qwen3"):
        on = cfg.get("use_sliding_window", False) and cfg.get("sliding_window") is not None
        return [on and i >= cfg.get("max_window_layers", 0) for i in range(n)]
    if kind == "gemma3_text":
        return [bool((i + 1) % cfg.get("sliding_window_pattern", 6)) for i in range(n)]
    return [False] * n


def decoder_forward(cfg, p32, ids):
    """LlamaForCausalLM and the families built on it: logits [B, T, V] in float64."""
    p = {k: v.double() for k, v in p32.items()}
    kind = cfg["model_type"]
    gemma = kind == "gemma3_text"
    b, t = ids.shape
    c, h, kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d = head_dim_of(cfg)
    eps = cfg.get("rms_norm_eps", 1e-6)
    sliding = sliding_layers(cfg)
    window = cfg.get("sliding_window")
    scale = cfg["query_pre_attn_scalar"] ** -0.5 if gemma else d ** -0.5
    attn_cap = cfg.get("attn_logit_softcapping") if gemma else None
    theta = cfg.get("rope_theta", 1e6 if gemma else 10000.0)

    def norm(x, w):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * (1.0 + w) if gemma else w * y

    def linear(x, name):
        y = x @ p[name + ".weight"].T
        return y + p[name + ".bias"] if name + ".bias" in p else y

    positions = torch.arange(t, dtype=torch.float64)
    x = p["model.embed_tokens.weight"][ids]
    if gemma:
        x = x * torch.tensor(c ** 0.5, dtype=torch.float32).double()
    i_idx, j_idx = torch.arange(t)[:, None], torch.arange(t)[None, :]
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        if gemma and sliding[layer]:
            inv, factor = rope_parameters(cfg, d, cfg.get("rope_local_base_freq", 10000.0), None, t)
        else:
            inv, factor = rope_parameters(cfg, d, theta, cfg.get("rope_scaling"), t)
        freqs = positions[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * factor, emb.sin() * factor
        n = norm(x, p[pre + "input_layernorm.weight"])
        q = linear(n, pre + "self_attn.q_proj").view(b, t, h, d)
        k = linear(n, pre + "self_attn.k_proj").view(b, t, kvh, d)
        v = linear(n, pre + "self_attn.v_proj").view(b, t, kvh, d).transpose(1, 2)
        if pre + "self_attn.q_norm.weight" in p:
            q = norm(q, p[pre + "self_attn.q_norm.weight"])
            k = norm(k, p[pre + "self_attn.k_norm.weight"])
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(h // kvh, dim=1)
        v = v.repeat_interleave(h // kvh, dim=1)
        scores = (q @ k.transpose(-1, -2)) * scale
        if attn_cap:
            scores = torch.tanh(scores / attn_cap) * attn_cap
        mask = j_idx > i_idx
        if sliding[layer] and window:
            mask = mask | (j_idx <= i_idx - window)
        scores = scores.masked_fill(mask, float("-inf"))
        a = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, h * d)
        a = linear(a, pre + "self_attn.o_proj")
        if gemma:
            x = x + norm(a, p[pre + "post_attention_layernorm.weight"])
            n = norm(x, p[pre + "pre_feedforward_layernorm.weight"])
        else:
            x = x + a
            n = norm(x, p[pre + "post_attention_layernorm.weight"])
        gate, up = linear(n, pre + "mlp.gate_proj"), linear(n, pre + "mlp.up_proj")
        act = gelu_new(gate) if gemma else torch.nn.functional.silu(gate)
        m = linear(act * up, pre + "mlp.down_proj")
        x = x + (norm(m, p[pre + "post_feedforward_layernorm.weight"]) if gemma else m)
    x = norm(x, p["model.norm.weight"])
    head = p["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", gemma) else p["lm_head.weight"]
    logits = x @ head.T
    cap = cfg.get("final_logit_softcapping") if gemma else None
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def decoder_shapes(cfg):
    kind = cfg["model_type"]
    gemma = kind == "gemma3_text"
    c, v, f = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    d = head_dim_of(cfg)
    q = cfg["num_attention_heads"] * d
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * d
    qkv_bias = kind == "qwen2" or cfg.get("attention_bias", False)
    o_bias = kind != "qwen2" and cfg.get("attention_bias", False)
    s = {"model.embed_tokens.weight": (v, c), "model.norm.weight": (c,)}
    if not cfg.get("tie_word_embeddings", gemma):
        s["lm_head.weight"] = (v, c)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        s.update({pre + "input_layernorm.weight": (c,), pre + "post_attention_layernorm.weight": (c,),
                  pre + "self_attn.q_proj.weight": (q, c), pre + "self_attn.k_proj.weight": (kv, c),
                  pre + "self_attn.v_proj.weight": (kv, c), pre + "self_attn.o_proj.weight": (c, q),
                  pre + "mlp.gate_proj.weight": (f, c), pre + "mlp.up_proj.weight": (f, c),
                  pre + "mlp.down_proj.weight": (c, f)})
        if qkv_bias:
            s.update({pre + "self_attn.q_proj.bias": (q,), pre + "self_attn.k_proj.bias": (kv,),
                      pre + "self_attn.v_proj.bias": (kv,)})
        if o_bias:
            s[pre + "self_attn.o_proj.bias"] = (c,)
        if kind in ("qwen3", "gemma3_text"):
            s.update({pre + "self_attn.q_norm.weight": (d,), pre + "self_attn.k_norm.weight": (d,)})
        if gemma:
            s.update({pre + "pre_feedforward_layernorm.weight": (c,),
                      pre + "post_feedforward_layernorm.weight": (c,)})
    return s


def greedy(forward, cfg, params, prompt, steps):
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(steps):
            nxt = forward(cfg, params, ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat((ids, nxt), dim=1)
    return ids[0, prompt.shape[1]:].tolist()


def gpt2_shapes(cfg):
    c, v, f = cfg["n_embd"], cfg["vocab_size"], cfg["n_inner"]
    s = {"transformer.wte.weight": (v, c), "transformer.wpe.weight": (cfg["n_positions"], c),
         "transformer.ln_f.weight": (c,), "transformer.ln_f.bias": (c,)}
    for i in range(cfg["n_layer"]):
        pre = f"transformer.h.{i}."
        s.update({pre + "ln_1.weight": (c,), pre + "ln_1.bias": (c,),
                  pre + "attn.c_attn.weight": (c, 3 * c), pre + "attn.c_attn.bias": (3 * c,),
                  pre + "attn.c_proj.weight": (c, c), pre + "attn.c_proj.bias": (c,),
                  pre + "ln_2.weight": (c,), pre + "ln_2.bias": (c,),
                  pre + "mlp.c_fc.weight": (c, f), pre + "mlp.c_fc.bias": (f,),
                  pre + "mlp.c_proj.weight": (f, c), pre + "mlp.c_proj.bias": (c,)})
    return s


def llama_shapes(cfg):
    c, v, f = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    d = c // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * d
    s = {"model.embed_tokens.weight": (v, c), "model.norm.weight": (c,), "lm_head.weight": (v, c)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        s.update({pre + "input_layernorm.weight": (c,), pre + "post_attention_layernorm.weight": (c,),
                  pre + "self_attn.q_proj.weight": (c, c), pre + "self_attn.k_proj.weight": (kv, c),
                  pre + "self_attn.v_proj.weight": (kv, c), pre + "self_attn.o_proj.weight": (c, c),
                  pre + "mlp.gate_proj.weight": (f, c), pre + "mlp.up_proj.weight": (f, c),
                  pre + "mlp.down_proj.weight": (c, f)})
    return s


def make_model(name, cfg, shapes, forward, seed):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    # Norm weights away from 1 and biases away from 0, so that a swapped or missing term shows.
    params = {k: torch.randn(shape, generator=gen) * (0.5 if len(shape) == 2 else 0.1) +
              (1.0 if len(shape) == 1 and k.endswith("weight") else 0.0)
              for k, shape in shapes.items()}
    ids = torch.randint(0, cfg["vocab_size"], (2, 12), generator=gen)
    with torch.no_grad():
        logits = forward(cfg, params, ids)
    golden = {"ids": ids.tolist(), "logits": [float(x) for x in logits.flatten()]}
    if forward is decoder_forward:
        # The greedy continuation of the first row's first half, one token at a time.
        golden["prompt"] = ids[:1, :6].tolist()[0]
        golden["greedy"] = greedy(forward, cfg, params, ids[:1, :6], 8)
    write_safetensors(os.path.join(out, "model.safetensors"), params)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f)
    cross_check_transformers(out, ids, logits)


def cross_check_transformers(model_dir, ids, logits):
    try:
        import transformers
    except ImportError:
        print(f"{model_dir}: transformers not installed; not cross-checked")
        return
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    with torch.no_grad():
        theirs = model(ids).logits.double()
    worst = (theirs - logits).abs().max().item()
    print(f"{model_dir}: transformers {transformers.__version__} agrees to {worst:.2e}")
    assert worst <= 1e-4 * logits.abs().max().item(), "the transcription disagrees with transformers"


# --- tokenizer -------------------------------------------------------------------------------

GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENCODER = bytes_to_unicode()


def merge_pair(word, pair):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_naive(text, merges_wanted):
    words = {}
    for piece in GPT2_PATTERN.findall(text):
        w = tuple(BYTE_ENCODER[b] for b in piece.encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    merges = []
    for _ in range(merges_wanted):
        pairs = {}
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        new_words = {}
        for w, n in words.items():
            merged = merge_pair(w, best)
            new_words[merged] = new_words.get(merged, 0) + n
        words = new_words
    return merges


def encoder_py_encode(text, ranks, vocab):
    # OpenAI's GPT-2 encoder.py, with the vocabulary and merges given.
    ids = []
    for piece in GPT2_PATTERN.findall(text):
        word = tuple(BYTE_ENCODER[b] for b in piece.encode("utf-8"))
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            word = merge_pair(word, best)
        ids.extend(vocab[t] for t in word)
    return ids


TRAINING_TEXT = """\
It's a truth universally acknowledged, that a single man in possession of a good fortune,
must be in want of a wife. They'll say we've done it; I'd say you're right!  Numbers: 1234567,
3.14159, 2026-11-22. Café, naïve, Zürich — ünïcödé. 日本語のテキスト。 Ελληνικά κείμενα.
Emoji 🎉🎉 and tabs\tand\nnewlines\n\n  indented    spaces   here.
The the THE tHe; don't DON'T won't.   \r\n
"""

CASES = [
    "Hello world",
    "It's a truth universally acknowledged.",
    "they'll've we'RE I'M don't",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nmore",
    "Numbers 1234567890 and 3.14159",
    "Café naïve Zürich ünïcödé",
    "日本語のテキスト。",
    "Emoji 🎉🎉 👩‍👩‍👧 mixed",
    "symbols !@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "",
    "a",
    "   ",
    "\r\n\r\n",
    "x" * 40,
]


def make_tokenizer():
    out = os.path.join(HERE, "tokenizer")
    os.makedirs(out, exist_ok=True)
    merges = train_naive(TRAINING_TEXT, 300)
    vocab = {}
    for b in range(256):
        vocab[BYTE_ENCODER[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    ranks = {m: i for i, m in enumerate(merges)}
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    cases = [{"text": t, "ids": encoder_py_encode(t, ranks, vocab)} for t in CASES]
    try:
        import tokenizers
        hf = tokenizers.Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
        for c in cases:
            assert hf.encode(c["text"]).ids == c["ids"], c["text"]
        print(f"tokenizer: tokenizers {tokenizers.__version__} agrees on {len(cases)} cases")
    except ImportError:
        print("tokenizer: tokenizers not installed; not cross-checked")
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)


# Each family's configuration at its smallest, with what distinguishes it switched on: a window
# (4) shorter than the 12 tokens, RoPE scalings whose original context (4 or 8) is inside them,
# head_dim apart from hidden / heads, soft-caps small enough to bite.
BASE = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 16,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
FAMILIES = [
    ("llama3", dict(BASE, model_type="llama", architectures=["LlamaForCausalLM"], head_dim=12,
                    tie_word_embeddings=True, hidden_act="silu", bos_token_id=1, eos_token_id=[2, 3, 4],
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8}), 3),
    ("llama-linear", dict(BASE, model_type="llama", architectures=["LlamaForCausalLM"],
                          rope_scaling={"type": "linear", "factor": 2.0}), 4),
    ("llama-dynamic", dict(BASE, model_type="llama", architectures=["LlamaForCausalLM"],
                           rope_scaling={"rope_type": "dynamic", "factor": 2.0}), 5),
    ("mistral", dict(BASE, model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=4,
                     hidden_act="silu", tie_word_embeddings=False), 6),
    ("qwen2", dict(BASE, model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_act="silu",
                   use_sliding_window=True, sliding_window=4, max_window_layers=1,
                   rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}), 7),
    ("qwen3", dict(BASE, model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=16,
                   hidden_act="silu", attention_bias=True, tie_word_embeddings=True,
                   rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4,
                                 "mscale": 1.0, "mscale_all_dim": 0.5, "beta_fast": 8, "beta_slow": 2}), 8),
    ("gemma3", dict(BASE, model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], head_dim=8,
                    num_key_value_heads=1, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
                    sliding_window=4, sliding_window_pattern=2, rope_local_base_freq=100.0, rope_theta=1e6,
                    rope_scaling={"rope_type": "linear", "factor": 2.0}, attn_logit_softcapping=3.0,
                    final_logit_softcapping=5.0, tie_word_embeddings=True, bos_token_id=2,
                    eos_token_id=[1, 63]), 9),
]


if __name__ == "__main__":
    torch.manual_seed(0)
    gpt2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 64,
            "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16, "n_ctx": 16, "n_inner": 48,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}
    make_model("gpt2", gpt2, gpt2_shapes(gpt2), gpt2_forward, 1)
    llama = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 64,
             "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 16,
             "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
             "hidden_act": "silu"}
    make_model("llama", llama, llama_shapes(llama), llama_forward, 2)
    for name, cfg, seed in FAMILIES:
        make_model(name, cfg, decoder_shapes(cfg), decoder_forward, seed)
    make_tokenizer()
