"""GGN matvec at a language-model vocabulary: closed form vs autodiff, against a gradient step.

    python benchmarks/ggn_memory.py [--vocab 32768] [--d-model 256] [--batch 16] [--seq 256] [--repeats 3]

Three compiled programs on the same transformer LM and batch (B x L tokens): the gradient of the mean
cross-entropy, the autodiff GGN matvec (`curvature.ggn`: a jvp of the loss gradient in logit space)
and the closed-form one (`curvature.softmax_ggn`: (diag(p) - p p^T) / N applied to J v). Peak memory is
XLA's own memory analysis of each compiled program (arguments + outputs + temporaries, nothing runs);
time is the best of `repeats` calls after a warm-up, the three interleaved. Ratios are against the gradient.
"""

import argparse
import time

import jax
import jax.numpy as jnp

from sandbox import curvature
from sandbox.losses import mean_cross_entropy
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig


def _peak_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def _seconds(fn, args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    cfg = ModelConfig(vocab_size=a.vocab, seq_len=a.seq, d_model=a.d_model, n_layers=a.layers,
                      n_heads=max(1, a.d_model // 64), d_ff=4 * a.d_model)
    k_init, k_tok, k_v = jax.random.split(jax.random.key(0), 3)
    params = transformer.init(k_init, cfg)
    tokens = jax.random.randint(k_tok, (a.batch, a.seq + 1), 0, a.vocab)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}

    def logits_fn(w, b):
        return transformer.apply(w, b["inputs"], cfg)

    def token_ce(z, b):
        return mean_cross_entropy(z.reshape(-1, a.vocab), b["targets"].reshape(-1))

    layout = curvature.Layout.of(params)
    flat, v = layout.ravel(params), jax.random.normal(k_v, (layout.dim,))
    programs = {
        "gradient": (lambda w, b: jax.grad(lambda f: token_ce(logits_fn(layout.unravel(f), b), b))(w), (flat, batch)),
        "GGN matvec, autodiff": (lambda w, b, u: curvature.ggn(logits_fn, token_ce, layout.unravel(w), b).mv(u),
                                 (flat, batch, v)),
        "GGN matvec, closed form": (lambda w, b, u: curvature.softmax_ggn(logits_fn, layout.unravel(w), b).mv(u),
                                    (flat, batch, v)),
    }
    print(f"vocab {a.vocab:,}, d_model {a.d_model}, {a.layers} layers, {layout.dim:,} params, "
          f"{a.batch} x {a.seq} = {a.batch * a.seq:,} tokens; logits {a.batch * a.seq * a.vocab * 4 / 2**20:,.0f} MiB")
    print(f"{'program':26s} {'peak MiB':>9s} {'x grad':>7s} {'seconds':>8s} {'x grad':>7s}")
    compiled = {name: jax.jit(fn).lower(*args).compile() for name, (fn, args) in programs.items()}
    for name, (_, args) in programs.items():
        jax.block_until_ready(compiled[name](*args))  # warm-up
    best = {name: float("inf") for name in programs}
    for _ in range(a.repeats):  # interleaved, so a busy machine slows all three alike
        for name, (_, args) in programs.items():
            best[name] = min(best[name], _seconds(compiled[name], args))
    base = _peak_bytes(compiled["gradient"]), best["gradient"]
    for name in programs:
        peak, secs = _peak_bytes(compiled[name]), best[name]
        print(f"{name:26s} {peak / 2**20:9,.0f} {peak / base[0]:7.2f} {secs:8.3f} {secs / base[1]:7.2f}")
    closed = programs["GGN matvec, closed form"]
    auto = programs["GGN matvec, autodiff"]
    gap = jnp.max(jnp.abs(jax.jit(closed[0])(*closed[1]) - jax.jit(auto[0])(*auto[1])))
    print(f"max |closed - autodiff| = {float(gap):.2e} (float32)")


if __name__ == "__main__":
    main()
