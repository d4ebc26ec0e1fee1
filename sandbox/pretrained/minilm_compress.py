"""MiniLM as a compression target: fidelity of its sentence embeddings on real corpus sentences.

The evaluation sentences and the calibration sentences for activation-aware SVD are disjoint
halves of one deterministic draw from the embedded pydoc corpus, so calibration never sees the
sentences it is scored on.
"""

from sandbox.compress import model as cmodel
from sandbox.compress.report import Target
from sandbox.pretrained import fidelity, minilm

RANK_MULTIPLE = 64  # SVD settings run as thin factors padded to a multiple of this rank (`compress.model.densify`)


def target(n_sentences: int = 300, n_calibration: int = 128, model=None) -> Target:
    """A `Target` scoring compressed MiniLM params by mean cosine and top-1 retrieval agreement."""
    model = minilm.load() if model is None else model
    both = fidelity.corpus_sentences(n_sentences + n_calibration)
    calib = both[1 :: max(len(both) // max(n_calibration, 1), 1)][:n_calibration]
    chosen = set(calib)
    sentences = [s for s in both if s not in chosen][:n_sentences]
    reference = model.embed(sentences)
    neighbours = fidelity.nearest_neighbours(reference)

    def evaluate(params):  # the uncompressed params' embeddings are the reference: not computed twice
        emb = reference if params is model.params else model.embed(sentences, params=params)
        return fidelity.fidelity(reference, emb, neighbours)

    def calibrate():
        _, batches = model.batches(calib, batch_size=32)
        return cmodel.calibrate(
            lambda p, batch: minilm.encode(p, *batch, model.cfg), model.params, batches, [m for _, m in batches],
            groups=minilm.param_groups(model.params),
        )

    return Target(
        name="all-MiniLM-L6-v2", params=model.params, evaluate=evaluate, metric="mean_cosine", calibrate=calibrate,
        info={"sentences": len(sentences), "calibration_sentences": len(calib)},
        groups=minilm.param_groups(model.params), unit="cosine to the uncompressed embedding",
        rank_multiple=RANK_MULTIPLE,
    )
