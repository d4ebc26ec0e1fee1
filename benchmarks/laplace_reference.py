"""sandbox.bayes vs laplace-torch: the reference fixture (float64), and a side-by-side timing.

    python benchmarks/laplace_reference.py --fixture   # writes tests/fixtures/laplace_reference.npz
    python benchmarks/laplace_reference.py --bench     # times fit + predictive, memory of a vocab head

Fixture: a 2 -> 8 -> 8 -> 3 tanh MLP (123 parameters) with the same float64 weights in JAX and in
PyTorch, 3-class data; for subset all / last_layer x structure full / diag / kron (and a full
regression posterior) it stores, at two prior precisions, laplace-torch's dense posterior precision
(permuted into the JAX flat order: per layer b, then w as Din x Dout row-major), its GLM predictive (probit for
classification) and its log marginal likelihood. tests/bayes/test_bayes_reference.py
compares sandbox.bayes with these numbers, so CI needs no torch.
Needs (bench/fixture only): pip install torch==2.13.0; pip install --no-deps laplace-torch asdfghjkl==0.1a4
backpack-for-pytorch curvlinops-for-pytorch torchmetrics lightning-utilities opt-einsum einops unfoldNd
einconv linear_operator.
"""

import argparse
import resource
import time
import warnings
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "laplace_reference.npz"
SIZES = (2, 8, 8, 3)
PRIORS = (1.0, 0.3)


def weights(sizes, seed=0):
    """JAX-layout weights {"layer_i": {"w": Din x Dout, "b": Dout}}, float64."""
    rng = np.random.default_rng(seed)
    return {f"layer_{i}": {"w": rng.normal(size=(a, b)) / np.sqrt(a), "b": 0.1 * rng.normal(size=b)}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}


def data(n, sizes, seed=1, regression=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, sizes[0]))
    if regression:
        return x, np.sin(x @ rng.normal(size=(sizes[0], sizes[-1]))) + 0.1 * rng.normal(size=(n, sizes[-1]))
    return x, (np.arctan2(x[:, 1], x[:, 0]) // (2 * np.pi / sizes[-1]) % sizes[-1]).astype(np.int64)


def torch_mlp(params, activation="tanh"):
    import torch

    layers = []
    for i in range(len(params)):
        w, b = params[f"layer_{i}"]["w"], params[f"layer_{i}"]["b"]
        lin = torch.nn.Linear(*w.shape, dtype=torch.get_default_dtype())
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        act = torch.nn.Tanh() if activation == "tanh" else torch.nn.ReLU()
        layers += [lin] + ([act] if i < len(params) - 1 else [])
    return torch.nn.Sequential(*layers)


def jax_order(params, layer_names):
    """perm with jax_flat = torch_flat[perm] for the given layers (torch: per layer weight Dout x Din, then bias)."""
    perm, offset = [], 0
    for name in layer_names:
        w = params[name]["w"]
        din, dout = w.shape
        w_idx = (offset + np.arange(dout * din).reshape(dout, din)).T  # JAX w[i, o] = torch W[o, i]
        b_idx = offset + dout * din + np.arange(dout)
        perm += [b_idx.ravel(), w_idx.ravel()]  # JAX leaves sort "b" before "w"
        offset += dout * din + dout
    return np.concatenate(perm)


def laplace_torch(model, x, y, likelihood, subset, structure, prior, sigma_noise=1.0):
    import torch
    from laplace import Laplace

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=len(x))
    la = Laplace(model, likelihood, subset_of_weights=subset, hessian_structure=structure,
                 prior_precision=prior, sigma_noise=sigma_noise)
    la.fit(loader)
    return la


def precision_matrix(la, structure):
    p = la.posterior_precision
    if structure == "full":
        return p.detach().numpy()
    if structure == "diag":
        return np.diag(p.detach().numpy())
    return p.to_matrix().detach().numpy()


def write_fixture():
    import torch

    torch.set_default_dtype(torch.float64)
    params = weights(SIZES)
    x, y = data(60, SIZES)
    x_test = np.random.default_rng(2).normal(size=(7, SIZES[0])) * 2
    out = {"x": x, "y": y, "x_test": x_test}
    out.update({f"params/{k}/{leaf}": v for k, d in params.items() for leaf, v in d.items()})
    names = list(params)
    for subset in ("all", "last_layer"):
        layers = names if subset == "all" else names[-1:]
        perm = jax_order(params, layers)
        for structure in ("full", "diag", "kron"):
            tag = f"classification/{subset}/{structure}"
            for j, prior in enumerate(PRIORS):
                la = laplace_torch(torch_mlp(params), x, y, "classification", subset, structure, prior)
                out[f"{tag}/lml{j}"] = float(la.log_marginal_likelihood())
                out[f"{tag}/precision{j}"] = precision_matrix(la, structure)[np.ix_(perm, perm)]
                with torch.no_grad():
                    probs = la(torch.from_numpy(x_test), pred_type="glm", link_approx="probit")
                out[f"{tag}/probit{j}"] = probs.numpy()
            print(f"{tag}: lml {out[f'{tag}/lml0']:.6f} (prior 1), {out[f'{tag}/lml1']:.6f} (prior 0.3)")
    rx, ry = data(60, SIZES[:-1] + (2,), regression=True)
    rparams = weights(SIZES[:-1] + (2,), seed=3)
    out.update({"regression/x": rx, "regression/y": ry})
    out.update({f"regression/params/{k}/{leaf}": v for k, d in rparams.items() for leaf, v in d.items()})
    perm = jax_order(rparams, list(rparams))
    for j, prior in enumerate(PRIORS):
        la = laplace_torch(torch_mlp(rparams), rx, ry, "regression", "all", "full", prior, sigma_noise=0.5)
        out[f"regression/lml{j}"] = float(la.log_marginal_likelihood())
        out[f"regression/precision{j}"] = precision_matrix(la, "full")[np.ix_(perm, perm)]
        with torch.no_grad():
            mean, var = la(torch.from_numpy(x_test), pred_type="glm")
        out[f"regression/mean{j}"] = mean.numpy()
        out[f"regression/var{j}"] = np.diagonal(var.numpy(), axis1=1, axis2=2)  # f's variance, no noise
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **out)
    print(f"wrote {FIXTURE}")


def _time(fn):
    """(first call: compilation or first-call caches included, second call) in seconds."""
    out = []
    for _ in range(2):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _mlp_problem(n, n_test):
    sizes = (20, 300, 300, 10)
    x, y = data(n, sizes)
    return sizes, weights(sizes), x, y, x[:n_test]


def _torch_case(subset, structure, n, n_test, conn):
    """laplace-torch's two timed calls, in a child process (so that a case past the limit can be stopped)."""
    import torch
    from laplace import Laplace

    warnings.filterwarnings("ignore")
    torch.set_default_dtype(torch.float32)
    _, params, x, y, x_test = _mlp_problem(n, n_test)
    tparams = {k: {leaf: v.astype(np.float32) for leaf, v in d.items()} for k, d in params.items()}
    tx, ty, txt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y), torch.from_numpy(
        x_test.astype(np.float32))

    def theirs():
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tx, ty), batch_size=500)
        la = Laplace(torch_mlp(tparams), "classification", subset_of_weights=subset, hessian_structure=structure)
        la.fit(loader)
        with torch.no_grad():
            return la(txt, pred_type="glm", link_approx="probit")

    conn.send(_time(theirs))


def _theirs(subset, structure, n, n_test, limit_s):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_torch_case, args=(subset, structure, n, n_test, child))
    proc.start()
    if not parent.poll(limit_s + 120):  # + the child's imports
        proc.kill()
        return None, None
    proc.join()
    return parent.recv()


def _fmt(t, limit_s):
    return f"> {limit_s}" if t is None else f"{t:.2f}"


def bench(n=2000, n_test=200, limit_s=240):
    import jax
    import jax.numpy as jnp

    from sandbox import bayes
    from sandbox.nn import plain_mlp

    sizes, params, x, y, x_test = _mlp_problem(n, n_test)
    jparams = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    fn = lambda p, xb: plain_mlp.apply(p, xb, "tanh")  # noqa: E731
    num = sum(a.size for d in params.values() for a in d.values())
    print(f"MLP {sizes}: {num} parameters, {n} training points, {n_test} test points, float32, CPU")
    print(f"fit + probit predictive; first call (compilation included) / second call (a new posterior of the same "
          f"model), seconds; laplace-torch (own process) stopped after about {limit_s} s; "
          "ratio = laplace-torch / sandbox, second calls")
    print(f"{'case':<20}{'sandbox 1st':>12}{'2nd':>8}{'laplace-torch 1st':>19}{'2nd':>8}{'ratio':>8}", flush=True)
    for label, subset, structure in (("last layer / kron", "last_layer", "kron"), ("all / kron", "all", "kron"),
                                     ("all / diag", "all", "diag")):
        jsub = None if subset == "all" else ["layer_2"]

        def ours(structure=structure, jsub=jsub):
            post = bayes.laplace(fn, jparams, (jnp.asarray(x, jnp.float32), jnp.asarray(y)), structure=structure,
                                 subset=jsub)
            return post.predictive(jnp.asarray(x_test, jnp.float32)).block_until_ready()

        ours_1, ours_2 = _time(ours)
        print(f"{label:<20}{ours_1:>12.2f}{ours_2:>8.2f}", end="", flush=True)
        theirs_1, theirs_2 = _theirs(subset, structure, n, n_test, limit_s)
        ratio = f"{theirs_2 / ours_2:.1f}x" if theirs_2 else f"> {limit_s / ours_2:.0f}x"
        print(f"{_fmt(theirs_1, limit_s):>19}{_fmt(theirs_2, limit_s):>8}{ratio:>8}", flush=True)


def vocab_head(d=256, vocab=8192, n=4096):
    """Memory of a last-layer Laplace on a vocabulary-sized head, kron and diag, vs the dense posterior."""
    import jax

    from sandbox import bayes

    key = jax.random.key(0)
    k1, k2, k3 = jax.random.split(key, 3)
    phi = jax.random.normal(k1, (n, d))
    w = jax.random.normal(k2, (d, vocab)) / np.sqrt(d)
    labels = jax.random.randint(k3, (n,), 0, vocab)
    print(f"\nlast-layer head d {d} x {vocab} classes ({d * vocab:,} parameters), {n} tokens, float32")
    dense_tb = (d * vocab) ** 2 * 4 / 1e12
    print(f"  dense posterior precision would need {dense_tb:.1f} TB")
    for structure in ("kron", "diag"):
        t = time.perf_counter()
        post = bayes.laplace_head(phi, labels, w, structure=structure)
        probs, _ = bayes.head_predictive(post, phi[:512])
        probs.block_until_ready()
        stored = sum(a.size for a in jax.tree_util.tree_leaves(post.curv)) * 4 / 2 ** 20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10
        print(f"  {structure}: fit + predictive(512) {time.perf_counter() - t:.2f} s, "
              f"posterior stores {stored:.0f} MiB, process peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", action="store_true", help="write the reference fixture (float64)")
    parser.add_argument("--bench", action="store_true", help="time fit + predictive side by side")
    parser.add_argument("--vocab-only", action="store_true", help="only the vocabulary-head memory check")
    parser.add_argument("--mlp-only", action="store_true", help="only the MLP timings")
    args = parser.parse_args()
    if args.fixture:
        write_fixture()
    if args.bench or args.mlp_only:
        bench()
    if args.bench:
        vocab_head()
    if args.vocab_only:
        vocab_head()
