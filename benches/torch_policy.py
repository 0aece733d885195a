#!/usr/bin/env python3
"""PyTorch peer of `gradus bench policy`.

The same decoder-only transformer as gradus-policy's burn model (pre-norm
RMSNorm, rotary positions in the rotate-half layout, causal attention with a
fused QKV projection, SwiGLU MLP with a fused gate/up projection, tied
embeddings, no biases), the same sizes, the same training step (forward,
token-mean cross-entropy, backward, global-norm clipping, AdamW) and the same
KV-cached sampling loop (prefill, then one token per row per step, temperature
sampling, per-token log-probs kept).

With `--hf DIR` the model is instead the Hugging Face checkpoint in DIR,
loaded by transformers (`AutoModelForCausalLM`, float32, its default
attention), trained with the same step and sampled with its own KV cache.

Prints one JSON object on its last stdout line:
    {"train_tokens_per_s": ..., "sample_tokens_per_s": ..., "peak_rss_mb": ...}
If torch is not installed it says so on stderr, prints the object with nulls
and exits 0, so the Rust bench still reports its own figures.
"""

import argparse
import json
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--seq", type=int, default=64, help="training sequence length")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--prompt-len", type=int, default=16, help="sampling prompt length")
    p.add_argument("--new-tokens", type=int, default=48, help="sampled tokens per row")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--sample-runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--hf", default=None, help="a Hugging Face checkpoint directory")
    return p.parse_args()


def main():
    args = parse()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_policy.py: PyTorch is not installed ({e}); skipping the peer. "
              "Install it with `pip install torch` to compare.", file=sys.stderr)
        print(json.dumps({"train_tokens_per_s": None, "sample_tokens_per_s": None}))
        return 0

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, d, h, ff):
            super().__init__()
            self.h, self.hd, self.ff = h, d // h, ff
            self.attn_norm = nn.RMSNorm(d, eps=1e-5)
            self.qkv = nn.Linear(d, 3 * d, bias=False)
            self.out = nn.Linear(d, d, bias=False)
            self.mlp_norm = nn.RMSNorm(d, eps=1e-5)
            self.gate_up = nn.Linear(d, 2 * ff, bias=False)
            self.down = nn.Linear(ff, d, bias=False)

        def forward(self, x, cos, sin, cache=None, causal=True):
            b, t, d = x.shape
            qkv = self.qkv(self.attn_norm(x)).view(b, t, 3 * self.h, self.hd).transpose(1, 2)
            q, k, v = qkv.split(self.h, dim=1)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            if cache is not None:
                if cache[0] is not None:
                    k = torch.cat([cache[0], k], 2)
                    v = torch.cat([cache[1], v], 2)
                cache[0], cache[1] = k, v
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and t > 1)
            x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
            g, u = self.gate_up(self.mlp_norm(x)).split(self.ff, dim=-1)
            return x + self.down(F.silu(g) * u)

    def rotate(x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    class Model(nn.Module):
        def __init__(self, vocab, d, h, layers):
            super().__init__()
            self.hd = d // h
            self.embed = nn.Embedding(vocab, d)
            self.blocks = nn.ModuleList([Block(d, h, 4 * d) for _ in range(layers)])
            self.norm = nn.RMSNorm(d, eps=1e-5)
            inv = 10000.0 ** (-torch.arange(0, self.hd // 2, dtype=torch.float64) * 2 / self.hd)
            self.register_buffer("inv_freq", inv.float(), persistent=False)

        def rope(self, pos):
            a = pos[:, None, :, None].float() * self.inv_freq
            return a.cos(), a.sin()

        def forward(self, ids, start=0, caches=None):
            b, t = ids.shape
            pos = torch.arange(start, start + t).expand(b, t)
            cos, sin = self.rope(pos)
            x = self.embed(ids)
            for i, blk in enumerate(self.blocks):
                x = blk(x, cos, sin, None if caches is None else caches[i])
            return self.norm(x)

        def logits(self, h):
            return h @ self.embed.weight.t()

    if args.hf:
        from transformers import AutoModelForCausalLM

        import inspect

        hf = AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32)
        params = inspect.signature(hf.forward).parameters
        cache_arg = "cache" if "cache" in params else "past_key_values"
        args.vocab = hf.config.vocab_size

        class Wrapped(nn.Module):
            """The checkpoint behind the interface the loops below use."""

            def __init__(self, m):
                super().__init__()
                self.m = m
                self.blocks = [None]

            def forward(self, ids, start=0, caches=None):
                if caches is None:
                    return self.m(input_ids=ids).logits
                # transformers 5.x renamed `past_key_values` to `cache`.
                out = self.m(input_ids=ids, use_cache=True, **{cache_arg: caches[0][0]})
                caches[0][0] = getattr(out, "cache", None) or out.past_key_values
                return out.logits

            def logits(self, h):
                return h

        model = Wrapped(hf)
    else:
        model = Model(args.vocab, args.d_model, args.heads, args.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-8,
                            weight_decay=0.0)
    ids = torch.randint(3, args.vocab, (args.batch, args.seq + 1))
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def train_step():
        logits = model.logits(model(inputs))
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        train_step()
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        train_step()
    train_s = (time.perf_counter() - t0) / args.train_steps
    train_tps = args.batch * args.seq / train_s

    @torch.no_grad()
    def sample_run():
        prompts = torch.randint(3, args.vocab, (args.batch, args.prompt_len))
        caches = [[None, None] for _ in model.blocks]
        h = model(prompts, 0, caches)
        logits = model.logits(h[:, -1])
        pos = args.prompt_len
        out, logps = [], []
        for step in range(args.new_tokens):
            lp = torch.log_softmax(logits, -1)
            tok = torch.multinomial(lp.exp(), 1)
            out.append(tok)
            logps.append(lp.gather(1, tok))
            if step + 1 == args.new_tokens:
                break
            h = model(tok, pos, caches)
            logits = model.logits(h[:, -1])
            pos += 1
        return torch.cat(out, 1), torch.cat(logps, 1)

    sample_run()
    t0 = time.perf_counter()
    for _ in range(args.sample_runs):
        sample_run()
    sample_s = (time.perf_counter() - t0) / args.sample_runs
    sample_tps = args.batch * args.new_tokens / sample_s

    print(f"torch {torch.__version__}, {args.threads} threads: "
          f"train {train_tps:.0f} tokens/s ({train_s * 1e3:.1f} ms/step), "
          f"sample {sample_tps:.0f} tokens/s ({sample_s * 1e3:.1f} ms/run)", file=sys.stderr)
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"train_tokens_per_s": train_tps, "sample_tokens_per_s": sample_tps,
                      "peak_rss_mb": peak_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
