"""Curvature toolkit vs PyHessian on the same MLP (CPU, float32), side by side in one run.

    python benchmarks/curvature_vs_pyhessian.py [--examples 2048] [--trials 5] [--top1-only]

The MLP (100 -> 256 -> 256 -> 10, tanh, ~94k parameters, cross-entropy) is trained briefly in
JAX on a Gaussian-mixture task and its weights are copied into PyTorch. Truths: the top-20
eigenvalues from a 300-step float64 Lanczos (residuals printed) and the exact trace from
tr H = (1/N) sum_n sum_l (||a_n^{l-1}||^2 + 1) tr(d2 loss_n / dz_l^2), where z_l = W_l a^{l-1} + b_l
(each weight enters one pre-activation linearly). Times exclude compilation (printed apart).
PyHessian and torch are optional (`pip install torch==2.13.0 && pip install --no-deps pyhessian`).
"""

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sandbox import curvature

SIZES = (100, 256, 256, 10)


def init_mlp(key, sizes=SIZES):
    keys = jax.random.split(key, len(sizes) - 1)
    return {f"l{i + 1}": {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))}


def pre_activations(params, x):
    """[a0, z1, a1, z2, a2, z3]: inputs, then each layer's pre-activation and activation."""
    out, a = [x], x
    for i in range(1, len(params) + 1):
        z = a @ params[f"l{i}"]["w"] + params[f"l{i}"]["b"]
        a = jnp.tanh(z)
        out += [z] + ([a] if i < len(params) else [])
    return out


def cross_entropy(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], axis=-1))


def loss(params, batch):
    return cross_entropy(pre_activations(params, batch["x"])[-1], batch["y"])


def make_data(key, n, sizes=SIZES):
    k_mu, k_y, k_x = jax.random.split(key, 3)
    means = 0.15 * jax.random.normal(k_mu, (sizes[-1], sizes[0]))
    y = jax.random.randint(k_y, (n,), 0, sizes[-1])
    return {"x": means[y] + jax.random.normal(k_x, (n, sizes[0])), "y": y}


def train(params, batch, steps=100):
    opt = optax.adam(1e-3)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params, batch), state)
        return (optax.apply_updates(params, updates), state), None

    return jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, steps)[0][0])(params)


def exact_trace(params, batch):
    """tr H by the layer identity in the module docstring (per-example Hessians in z_l)."""
    def tail(i, z, y):  # loss of one example as a function of layer i's pre-activation
        for j in range(i + 1, len(SIZES)):
            z = jnp.tanh(z) @ params[f"l{j}"]["w"] + params[f"l{j}"]["b"]
        return cross_entropy(z, y)

    def one(xy):
        x, y = xy
        acts = pre_activations(params, x)
        total = 0.0
        for i in range(1, len(SIZES)):
            a, z = acts[2 * i - 2], acts[2 * i - 1]
            hz = jax.hessian(lambda z, i=i: tail(i, z, y))(z)
            total += (jnp.sum(a**2) + 1) * jnp.trace(hz)
        return total

    return jnp.mean(jax.lax.map(one, (batch["x"], batch["y"]), batch_size=64))


def timed(fn, repeats=3):
    """(median seconds of `repeats` runs after one warm-up, warm-up seconds, last result)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), first, out


LOOP_STEPS = 20


@jax.jit
def repeated_hvp(op, v):
    """LOOP_STEPS normalized HVPs in a jitted loop, as Lanczos runs them: the forward and backward pass
    at w do not depend on v, so they run once (`linearized`), and each step pays only the tangent pass."""
    linear = op.linearized()

    def step(_, v):
        w = linear.mv(v)
        return w / jnp.linalg.norm(w)

    return jax.lax.fori_loop(0, LOOP_STEPS, step, v)


def rel(a, b):
    return np.abs(np.asarray(a, np.float64) - b) / np.abs(b)


def sandbox_side(params, batch, truth_K, true_trace, trials, full):
    res = {}
    op = curvature.hessian(loss, params, batch)
    grad_fn = jax.jit(jax.grad(loss))
    v = jax.random.normal(jax.random.key(1), (op.dim,))
    res["grad"] = timed(lambda: grad_fn(params, batch), 10)[0]
    res["hvp"] = timed(lambda: op.matvec(v), 10)[0]
    res["hvp_loop"] = timed(lambda: repeated_hvp(op, v), 5)[0] / LOOP_STEPS
    key = jax.random.key(2)
    res["top1_sweep"] = []  # (seconds, rel. error, steps) of every step count tried, for the equal-error row
    for m in (4, 6, 8, 10, 12, 15, 20, 25, 30, 40):  # fewest Lanczos steps reaching 1e-4
        t, first, (vals, _) = timed(lambda m=m: curvature.top_eigenpairs(op, 1, key=key, num_steps=m))
        res["top1"] = (t, first - t, float(rel(vals[0], truth_K[0])), m)
        res["top1_sweep"].append((t, res["top1"][2], m))
        if res["top1"][2] < 1e-4:
            break
    if not full:
        return res
    for m in (40, 60, 80, 100, 120):
        t, first, (vals, _) = timed(lambda m=m: curvature.top_eigenpairs(op, 20, key=key, num_steps=m), 1)
        res["top20"] = (t, first - t, float(rel(vals, truth_K).max()), m)
        if res["top20"][2] < 1e-4:
            break
    for method in ("hutch++", "hutchinson"):
        keys = jax.random.split(jax.random.key(3), trials)
        errs = [rel(curvature.trace(op, key=k, num_matvecs=99, method=method), true_trace)
                for k in keys]
        res[method] = float(np.mean(errs))
    return res


def torch_side(params, batch, truth_K, true_trace, trials, full):
    try:
        import torch
        from pyhessian import hessian as PyHessian
    except ImportError as e:
        print(f"(PyTorch/PyHessian not installed: {e}; showing the sandbox's numbers only)")
        return None
    torch.manual_seed(0)
    layers = []
    for i in range(1, len(SIZES)):
        lin = torch.nn.Linear(SIZES[i - 1], SIZES[i])
        with torch.no_grad():  # torch stores W as out x in
            lin.weight.copy_(torch.from_numpy(np.asarray(params[f"l{i}"]["w"]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.array(params[f"l{i}"]["b"])))
        layers += [lin] + ([torch.nn.Tanh()] if i < len(SIZES) - 1 else [])
    model = torch.nn.Sequential(*layers)
    x = torch.from_numpy(np.asarray(batch["x"]))
    y = torch.from_numpy(np.asarray(batch["y"]).astype(np.int64))
    crit = torch.nn.CrossEntropyLoss()
    ps = list(model.parameters())
    vs = [torch.randn_like(p) for p in ps]

    def grad():
        return torch.autograd.grad(crit(model(x), y), ps)

    def hvp():  # double backprop: forward, grad with a graph, grad of <g, v>
        g = torch.autograd.grad(crit(model(x), y), ps, create_graph=True)
        return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, vs)), ps)

    res = {"grad": timed(grad, 10)[0], "hvp": timed(hvp, 10)[0]}
    with torch.no_grad():
        res["loss_gap"] = abs(float(crit(model(x), y)) - float(loss(params, batch)))
    warnings.filterwarnings("ignore", message="Using backward")  # PyHessian's own call
    hc = PyHessian(model, crit, data=(x, y), cuda=False)
    runs = []
    for _ in range(3):  # its random start differs per call: median time, largest error
        t0 = time.perf_counter()
        vals, _ = hc.eigenvalues(top_n=1)  # defaults: maxIter=100, tol=1e-3
        runs.append((time.perf_counter() - t0, float(rel(vals[0], truth_K[0]))))
    res["top1"] = (float(np.median([t for t, _ in runs])), max(e for _, e in runs))
    if not full:
        return res
    t0 = time.perf_counter()
    vals, _ = hc.eigenvalues(top_n=20)
    res["top20"] = (time.perf_counter() - t0, float(rel(sorted(vals, reverse=True), truth_K).max()))
    errs = [rel(np.mean(hc.trace(maxIter=99, tol=-1.0)), true_trace) for _ in range(trials)]
    res["hutchinson"] = float(np.mean(errs))  # tol=-1: never stops early, exactly 99 HVPs
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--trials", type=int, default=5, help="trace trials to average")
    parser.add_argument("--top1-only", action="store_true", help="only the HVP costs and the top eigenvalue")
    args = parser.parse_args()
    k_init, k_data = jax.random.split(jax.random.key(0))
    batch = make_data(k_data, args.examples)
    params = train(init_mlp(k_init), batch)
    n = sum(x.size for x in jax.tree_util.tree_leaves(params))
    print(f"MLP {SIZES}, {n} parameters, {args.examples} examples, loss {float(loss(params, batch)):.4f}")
    with jax.enable_x64(True):
        p64, b64 = jax.tree_util.tree_map(
            lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, (params, batch))
        truth = curvature.eigenpairs(curvature.hessian(loss, p64, b64), 20,
                                     key=jax.random.key(9), num_steps=300)
        truth_K, max_residual = np.asarray(truth.values_K), float(truth.residuals_K.max())
        true_trace = float("nan") if args.top1_only else float(exact_trace(p64, b64))
    print(f"truth: lambda_1..3 = {truth_K[:3]}, max residual of top-20 {max_residual:.1e};"
          f" exact trace {true_trace:.6f}")
    sb = sandbox_side(params, batch, truth_K, true_trace, args.trials, not args.top1_only)
    pt = torch_side(params, batch, truth_K, true_trace, args.trials, not args.top1_only)
    print_table(sb, pt)


def print_table(sb, pt):
    na = "n/a"
    rows = [
        ("HVP time / gradient time", f"{sb['hvp'] / sb['grad']:.2f}",
         f"{pt['hvp'] / pt['grad']:.2f} (double backprop)" if pt else na,
         f"HVP {sb['hvp'] * 1e3:.1f} ms vs {pt['hvp'] * 1e3:.1f} ms" if pt else ""),
        ("  per step of a jitted loop / gradient", f"{sb['hvp_loop'] / sb['grad']:.2f}", "", "(forward pass once)"),
        ("top-1 eigenvalue: time (s)", f"{sb['top1'][0]:.3f} ({sb['top1'][3]} Lanczos steps)",
         f"{pt['top1'][0]:.3f} (top_n=1, tol=1e-3; median of 3)" if pt else na,
         f"{pt['top1'][0] / sb['top1'][0]:.1f}x faster" if pt else ""),
        ("top-1 eigenvalue: rel. error", f"{sb['top1'][2]:.1e}", f"{pt['top1'][1]:.1e}" if pt else na,
         ""),
        ("compile time (s): top-1", f"{sb['top1'][1]:.2f}", "", ""),
    ]
    if pt:  # the fewest Lanczos steps at least as accurate as PyHessian's answer: time at equal error
        t, err, m = next((x for x in sb["top1_sweep"] if x[1] <= pt["top1"][1]), sb["top1_sweep"][-1])
        rows.append(("top-1 at PyHessian's error: time (s)", f"{t:.3f} ({m} steps, error {err:.1e})",
                     f"{pt['top1'][0]:.3f}", f"{pt['top1'][0] / t:.1f}x faster"))
    if "top20" in sb:
        rows += [
            ("top-20 eigenvalues: time (s)", f"{sb['top20'][0]:.3f} ({sb['top20'][3]} steps)",
             f"{pt['top20'][0]:.3f} (top_n=20)" if pt else na,
             f"{pt['top20'][0] / sb['top20'][0]:.1f}x faster" if pt else ""),
            ("top-20: max rel. error", f"{sb['top20'][2]:.1e}", f"{pt['top20'][1]:.1e}" if pt else na, ""),
            ("trace rel. error, 99 HVPs", f"{sb['hutch++']:.2e} (Hutch++)",
             f"{pt['hutchinson']:.2e} (Hutchinson)" if pt else na,
             f"{pt['hutchinson'] / sb['hutch++']:.1f}x smaller" if pt else ""),
            ("  (sandbox Hutchinson, 99 HVPs)", f"{sb['hutchinson']:.2e}", "", ""),
            ("compile time (s): top-20", f"{sb['top20'][1]:.2f}", "", ""),
        ]
    if pt:
        rows.append(("JAX vs torch loss gap", f"{pt['loss_gap']:.1e}", "", ""))
    widths = [max(len(r[i]) for r in rows + [("", "sandbox (JAX)", "PyHessian / torch", "")])
              for i in range(4)]
    header = ("metric", "sandbox (JAX)", "PyHessian / torch", "ratio")
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
