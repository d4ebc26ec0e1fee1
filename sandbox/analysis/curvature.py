"""Curvature of a trained model: top eigenvalues, spectral density, trace, per-block spectra.

Works on any model given as `logits_fn(params, batch) -> logits (..., C)` with integer
`batch["targets"]` (...): the loss is the mean token cross-entropy L(w) = mean_i CE(z_i, y_i),
the very objective the sandbox trains. Operators: the table `curvature.kinds.KINDS` ("hessian";
"ggn", J^T H_z J with H_z in closed form; "fisher", empirical; "fisher-mc", labels sampled from the model).
Blocks are the subtrees the model's parameter grouping names (`sandbox.nn.groups`).
"""

import dataclasses
import os

import jax
import numpy as np

from sandbox import curvature
from sandbox.errors import SandboxError
from sandbox.nn import groups as groups_lib

OPERATORS = tuple(curvature.kinds.KINDS)


@dataclasses.dataclass(frozen=True)
class CurvatureOptions:
    operator: str = "hessian"
    top_k: int = 10  # top eigenvalues by Lanczos
    num_steps: int = 80  # Lanczos steps (eigenvalues and SLQ)
    density: bool = False  # spectral density by SLQ
    num_probes: int = 4  # SLQ probes
    trace: bool = False  # trace by Hutch++
    num_matvecs: int = 60  # matvecs for the trace
    blocks: bool = False  # also per block of the parameter grouping
    seed: int = 0
    plain: bool = False  # Lanczos without a basis (Cullum-Willoughby) even where the bases would fit

    def __post_init__(self):
        from sandbox import validate

        validate.one_of("hessian", "operator", self.operator, OPERATORS)
        for name in ("top_k", "num_steps", "num_probes"):
            validate.positive_int("hessian", name, getattr(self, name))
        if self.trace and self.num_matvecs < 3:
            raise SandboxError(f"hessian.num_matvecs={self.num_matvecs}: Hutch++ needs at least 3 matvecs")


def operator(kind: str, logits_fn, params, batch, key: jax.Array) -> curvature.LinearOperator:
    """The `kind` curvature operator of L(w) = mean CE(logits_fn(w, batch), batch["targets"])."""
    return curvature.kinds.operator(kind, logits_fn, curvature.kinds.SOFTMAX_CE, params, batch, key)


def memory_bytes(dim: int, opts: CurvatureOptions, itemsize: int = 4) -> int:
    """Bytes of the vectors in memory at once: the Lanczos bases, (m + 1) x dim per run (m = max(num_steps,
    top_k)), one run per SLQ probe (or one without --density), `linop.vector_batch()` runs at a time (one on
    CPU); or Hutch++'s num_matvecs sketch and probe vectors, whichever is larger."""
    m = min(max(opts.num_steps, opts.top_k), dim)
    runs = opts.num_probes if opts.density else 1
    bases = min(runs, curvature.linop.vector_batch()) * (m + 1) * dim * itemsize
    return max(bases, opts.num_matvecs * dim * itemsize if opts.trace else 0)


def free_bytes() -> int | None:
    """Physical memory free now (None where the OS does not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


PLAIN = "lanczos-plain"  # no reorthogonalization, Cullum-Willoughby (`curvature.lanczos_plain`)
PLAIN_VECTORS = 4  # vectors a plain Lanczos run (3) or a Hutchinson probe (2) holds, with one to spare


def route(dim: int, opts: CurvatureOptions) -> str:
    """"lanczos" (full reorthogonalization; every target in one program) when its bases take at most half the
    free memory (the rest is the model's own passes), else `PLAIN` for the whole operator: a few vectors
    whatever the number of steps (a large model)."""
    free = free_bytes()
    if not opts.plain and (free is None or memory_bytes(dim, opts) <= free // 2):
        return "lanczos"
    return PLAIN


def check_request(dim: int, opts: CurvatureOptions) -> None:
    """Refuse, before any work, more eigenvalues than the operator has, per-block spectra whose Lanczos bases
    would not fit in free memory, or an operator too large for even the plain route's few vectors."""
    if opts.top_k > dim:
        raise SandboxError(f"top_k={opts.top_k} exceeds the operator's dimension {dim:,} (its number of "
                           "eigenvalues); ask for fewer")
    if route(dim, opts) == "lanczos":
        return
    need, free = memory_bytes(dim, opts), free_bytes() or float("inf")
    if opts.blocks and opts.plain:
        raise SandboxError("--blocks runs every block with a Lanczos basis; drop --plain-lanczos or --blocks")
    if opts.blocks:
        raise SandboxError(f"--blocks keeps a Lanczos basis per block: top_k={opts.top_k}, num_steps={opts.num_steps}"
                           f" on {dim:,} parameters need about {need / 2**30:.1f} GiB, more than the "
                           f"{free / 2**30:.1f} GiB free; ask for fewer steps, or drop --blocks (the whole "
                           "operator then runs without a basis)")
    if PLAIN_VECTORS * dim * 4 > free:
        raise SandboxError(f"{dim:,} parameters need {PLAIN_VECTORS * dim * 4 / 2**30:.1f} GiB of Lanczos vectors "
                           f"even without a basis, more than the {free / 2**30:.1f} GiB free")


def stages(opts: CurvatureOptions, groups: dict | None, params) -> int:
    """How many `tick`s `analyse` makes: one per stage per target."""
    targets = 1 + (len(groups_lib.blocks(groups or groups_lib.infer(params))) if opts.blocks else 0)
    return targets * len(_target_stages(opts))


def _target_stages(opts: CurvatureOptions) -> list[str]:
    """The stages each target goes through (`curvature.blocks.STAGES` that `opts` asks for)."""
    return [stage for stage, on in zip(curvature.blocks.STAGES, (True, opts.density, opts.trace)) if on]


def lanczos_matvecs(opts: CurvatureOptions) -> int:
    """Matvecs one target costs by Lanczos (`curvature.blocks.spectra`): num_steps per SLQ probe (one run
    without density), and num_matvecs for the trace. A block of at most this many coordinates is cheaper
    exactly, by one matvec per coordinate (`curvature.blocks.dense`)."""
    return opts.num_steps * (opts.num_probes if opts.density else 1) + (opts.num_matvecs if opts.trace else 0)


def analyse(logits_fn, params, batch, opts: CurvatureOptions = CurvatureOptions(), groups: dict | None = None,
            progress=None) -> dict:
    """{"dim", "top_eigenvalues", "residuals", ["density": {"grid", "values"}], ["trace"]} of the whole
    operator and, with `opts.blocks`, the same for each block of `groups` (default: inferred from the
    parameter names) under "blocks", each with its "method": "lanczos" (every such target in one compiled
    program, `curvature.blocks.spectra`) or "dense" (a block of at most `lanczos_matvecs(opts)` coordinates,
    exact: its eigenvalues, their spectral measure and its trace). `progress(target, stage)` after each stage."""
    key_op, key_solve = jax.random.split(jax.random.key(opts.seed))
    op = operator(opts.operator, logits_fn, params, batch, key_op)
    check_request(op.dim, opts)
    if route(op.dim, opts) == PLAIN:
        return {"operator": opts.operator, "title": curvature.kinds.KINDS[opts.operator].title,
                **_plain_summary(op, opts, key_solve, progress)}
    names = ["all"] + (groups_lib.blocks(groups or groups_lib.infer(params)) if opts.blocks else [])
    masks_TxN = curvature.blocks.masks(op.layout, names)
    exact = [t for t in range(1, len(names)) if masks_TxN[t].sum() <= lanczos_matvecs(opts)]
    approx = [t for t in range(len(names)) if t not in exact]
    tick = (lambda i, stage: progress(names[approx[i]], stage)) if progress else None
    out = curvature.blocks.spectra(op, masks_TxN[approx], key=key_solve, k=min(opts.top_k, op.dim),
                                   num_steps=opts.num_steps, num_probes=opts.num_probes if opts.density else 0,
                                   num_matvecs=opts.num_matvecs if opts.trace else 0, tick=tick)
    per_target = {names[t]: _lanczos_summary(out, i, int(masks_TxN[t].sum()), opts) for i, t in enumerate(approx)}
    for t, a_bb in zip(exact, curvature.blocks.dense(op, masks_TxN[exact]) if exact else []):
        per_target[names[t]] = _dense_summary(a_bb, opts)
        for stage in _target_stages(opts) if progress else []:
            progress(names[t], stage)
    result = {"operator": opts.operator, "title": curvature.kinds.KINDS[opts.operator].title,
              **{k: v for k, v in per_target.pop("all").items() if k != "method"}}
    if per_target:
        result["blocks"] = {name: per_target[name] for name in names[1:]}
    return result


def _plain_summary(op, opts: CurvatureOptions, key: jax.Array, progress=None) -> dict:
    """The whole operator's fields without a basis (`curvature.lanczos_plain`): top-k after Cullum-Willoughby,
    the SLQ density from plain runs one probe at a time, the trace by Hutchinson (Hutch++'s sketch is a basis)."""
    tick = progress or (lambda target, stage: None)
    keys = jax.random.split(key, 3)
    values, residuals = curvature.lanczos_plain.top_eigenvalues(op, opts.top_k, key=keys[0], num_steps=opts.num_steps)
    one = {"dim": op.dim, "method": PLAIN, "top_eigenvalues": [float(v) for v in values],
           "residuals": [float(r) for r in residuals]}
    tick("all", curvature.blocks.STAGES[0])
    if opts.density:
        one["density"] = _density(*curvature.lanczos_plain.slq_nodes_weights(
            op, key=keys[1], num_steps=opts.num_steps, num_probes=opts.num_probes))
        tick("all", curvature.blocks.STAGES[1])
    if opts.trace:
        one["trace"] = float(curvature.trace(op, key=keys[2], num_matvecs=opts.num_matvecs, method="hutchinson"))
        one["trace_method"] = "hutchinson"
        tick("all", curvature.blocks.STAGES[2])
    return one


def _lanczos_summary(out: dict, i: int, dim: int, opts: CurvatureOptions) -> dict:
    k = min(opts.top_k, dim)
    one = {"dim": dim, "method": "lanczos", "top_eigenvalues": [float(v) for v in out["values_TxK"][i, :k]],
           "residuals": [float(r) for r in out["residuals_TxK"][i, :k]]}
    if opts.density:
        one["density"] = _density(out["nodes_TxPxM"][i], out["weights_TxPxM"][i])
    if opts.trace:
        one["trace"] = float(out["trace_T"][i])
    return one


def _dense_summary(a_bb: np.ndarray, opts: CurvatureOptions) -> dict:
    """The same fields from the exact block: eigenvalues (residual 0), the spectral measure (weight 1/n_b
    on each eigenvalue, smoothed as SLQ's nodes are), the trace."""
    lam_B = np.linalg.eigvalsh(a_bb)
    k = min(opts.top_k, len(lam_B))
    one = {"dim": len(lam_B), "method": "dense", "top_eigenvalues": [float(v) for v in lam_B[::-1][:k]],
           "residuals": [0.0] * k}
    if opts.density:
        one["density"] = _density(lam_B[None, :], np.full((1, len(lam_B)), 1 / len(lam_B)))
    if opts.trace:
        one["trace"] = float(np.trace(a_bb))
    return one


# the Gaussian kernel's width as a fraction of the spectrum's range: 80 Lanczos nodes per probe are a comb of
# spikes at 0.1%; at 1% neighbouring nodes merge into a readable curve and outliers stay separate bumps
DENSITY_SIGMA_RATIO = 0.01


def _density(nodes_PxM, weights_PxM) -> dict:
    """{"grid", "values", "sigma"}: the quadrature (nodes, weights per probe) smoothed on a grid by a Gaussian
    kernel of width sigma = DENSITY_SIGMA_RATIO x the range of the nodes (`smooth_density`)."""
    nodes = np.asarray(nodes_PxM, np.float64)
    grid, values = curvature.smooth_density(nodes_PxM, weights_PxM, sigma_ratio=DENSITY_SIGMA_RATIO)
    return {"grid": [float(g) for g in grid], "values": [float(v) for v in values],
            "sigma": DENSITY_SIGMA_RATIO * float(nodes.max() - nodes.min())}


def of_run(run, opts: CurvatureOptions = CurvatureOptions(), batch_size: int | None = None, progress=None) -> dict:
    """`analyse` of a `Run` on its default analysis batch (`Run.analysis_set`: the first `batch_size`
    sequences of the eval set's first batch); the result names that batch ("eval_set")."""
    evals = run.analysis_set(batch_size)
    result = analyse(run.logits, run.params, evals.batch(0), opts, run.groups(), progress)
    return {"run_dir": str(run.path), "step": run.step, "eval_set": evals.name, "batch_size": evals.batch_size,
            "options": dataclasses.asdict(opts), **result}
