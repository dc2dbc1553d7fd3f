"""all-MiniLM-L6-v2 in numpy reproduces sentence-transformers' published similarities."""

from __future__ import annotations

import numpy as np
import pytest

from chiffon.servers.memory.minilm import DIMENSION, local_model


def test_matches_the_similarities_sbert_publishes() -> None:
    # https://sbert.net quickstart, model all-MiniLM-L6-v2: 0.6660, 0.1046, 0.1411.
    vectors = local_model().embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sims = vectors @ vectors.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=5e-4)
    assert sims[0, 2] == pytest.approx(0.1046, abs=5e-4)
    assert sims[1, 2] == pytest.approx(0.1411, abs=5e-4)


def test_vectors_are_unit_length_and_independent_of_batching() -> None:
    texts = ["deploy uptime kuma on east", "backup the postgres database", "x " * 400]
    together = local_model().embed(texts)
    alone = np.vstack([local_model().embed([t]) for t in texts])
    assert together.shape == (3, DIMENSION) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5)  # padding never leaks into the pooled vector


def test_homelab_paraphrase_ranks_first() -> None:
    query, *docs = local_model().embed([
        "set up monitoring for my web portals",
        "Deploy Uptime Kuma and add a monitor for every portal",
        "Back up the PostgreSQL database to the NAS",
        "Remove old Docker images to free disk space",
    ])
    assert int(np.argmax(np.array(docs) @ query)) == 0
