"""The calibrated, mass-based admission rule of hybrid search (``mmgr_qdrant.routing``)."""

from __future__ import annotations

import numpy as np
import pytest

from mmgr_qdrant.config import HybridConfig
from mmgr_qdrant.errors import ConfigError
from mmgr_qdrant.routing import admit_by_mass, calibrated, level1_centres

N = 10_000
HC = HybridConfig(mass_target=0.9, min_fraction=0.0, max_fraction=0.5, min_candidates=0)


def _pairs(logits: np.ndarray) -> list[tuple[tuple[int, ...], float]]:
    return [((0, i), float(s)) for i, s in enumerate(logits)]


def test_calibrated_is_a_distribution_and_temperature_flattens() -> None:
    s = np.asarray([0.0, -1.0, -3.0, -np.inf])
    sharp, flat = calibrated(s, 0.5), calibrated(s, 5.0)
    assert sharp.sum() == pytest.approx(1.0) and flat.sum() == pytest.approx(1.0)
    assert sharp[3] == 0.0 and flat[3] == 0.0
    assert sharp[0] > flat[0] > flat[1]


def test_sure_query_admits_one_prefix_unsure_many() -> None:
    counts = [100] * 50
    sure = admit_by_mass(_pairs(np.asarray([0.0] + [-20.0] * 49)), counts, n_docs=N, k=10, hybrid=HC, temperature=1.0)
    unsure = admit_by_mass(_pairs(np.zeros(50)), counts, n_docs=N, k=10, hybrid=HC, temperature=1.0)
    assert (len(sure.pairs), sure.n_admitted, sure.reason) == (1, 100, "mass")
    assert sure.confidence > 0.99
    assert unsure.n_admitted == 4500 and unsure.reason == "mass"  # 45 of 50 equal prefixes reach 0.9
    assert unsure.confidence == pytest.approx(1 / 50)


@pytest.mark.parametrize("seed", range(20))
def test_budget_is_monotone_in_flatness(seed: int) -> None:
    """For the same prefix order, a flatter distribution (higher temperature) never admits fewer documents."""
    rng = np.random.default_rng(seed)
    logits = np.sort(rng.normal(0, 3, 64))[::-1]
    counts = rng.integers(1, 400, 64).tolist()
    hc = HybridConfig(mass_target=float(rng.uniform(0.5, 0.99)), min_fraction=float(rng.uniform(0, 0.05)),
                      max_fraction=float(rng.uniform(0.05, 1.0)), min_candidates=int(rng.integers(0, 300)))
    admitted = [admit_by_mass(_pairs(logits), counts, n_docs=N, k=10, hybrid=hc, temperature=t).n_admitted for t in (0.1, 0.5, 1, 2, 5, 50)]
    assert admitted == sorted(admitted)


def test_floor_and_ceiling() -> None:
    counts = [300] * 40
    flat = _pairs(np.zeros(40))
    capped = admit_by_mass(flat, counts, n_docs=N, k=10, hybrid=HybridConfig(mass_target=0.99, max_fraction=0.1, min_candidates=0), temperature=1.0)
    assert capped.reason == "ceiling" and capped.n_admitted == 900 <= 0.1 * N
    sure = _pairs(np.asarray([0.0] + [-30.0] * 39))
    floor = HybridConfig(min_fraction=0.05, max_fraction=0.1, min_candidates=0)
    floored = admit_by_mass(sure, counts, n_docs=N, k=10, hybrid=floor, temperature=1.0)
    assert floored.reason == "floor" and floored.n_admitted == 600  # 0.05 * N = 500 documents: two prefixes
    # a floor at the ceiling stops under it (whole prefixes), as a small collection's min_candidates does
    at = admit_by_mass(sure, counts, n_docs=N, k=10, hybrid=HybridConfig(max_fraction=0.05, min_candidates=500), temperature=1.0)
    assert at.reason == "ceiling" and at.n_admitted == 300
    # k documents are always admitted, even past the ceiling
    big = admit_by_mass(sure, [5] + counts[1:], n_docs=N, k=10, hybrid=HybridConfig(max_fraction=0.0001, min_candidates=0), temperature=1.0)
    assert big.n_admitted >= 10


def test_ran_out_of_prefixes() -> None:
    a = admit_by_mass(_pairs(np.zeros(3)), [5, 5, 5], n_docs=N, k=10, hybrid=HybridConfig(mass_target=1.0, min_candidates=0), temperature=1.0)
    assert a.reason in ("beam", "mass") and a.n_admitted == 15
    assert admit_by_mass([], [], n_docs=N, k=10, hybrid=HC, temperature=1.0).n_admitted == 0


def test_explain_fields() -> None:
    a = admit_by_mass(_pairs(np.zeros(10)), [10] * 10, n_docs=100, k=5, hybrid=HybridConfig(max_fraction=1.0, min_candidates=0), temperature=2.0)
    e = a.explain()
    assert set(e) >= {"admitted", "mass", "confidence", "stopped", "temperature", "floor", "ceiling"}
    assert e["mass"] >= HC.mass_target and e["stopped"] == "mass"


@pytest.mark.parametrize("bad", [{"admission": "wide"}, {"mass_target": 0.0}, {"mass_target": 1.5}, {"min_fraction": -0.1}, {"max_fraction": 0.0}])
def test_bad_hybrid_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        HybridConfig(**bad)  # type: ignore[arg-type]


class _Counts:
    """The one part of a ``GenerativeIndex`` admission reads: documents per prefix (the prefix's last code)."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts

    def prefix_counts(self, prefixes: np.ndarray) -> np.ndarray:
        return self.counts[prefixes[:, -1]]


@pytest.mark.parametrize("seed", range(30))
def test_batched_admission_equals_the_loop(seed: int) -> None:
    """``admit_beams`` (array code, every query at once) keeps what ``admit_by_mass`` keeps, for the same reason."""
    from mmgr_qdrant.decoder import BeamResult
    from mmgr_qdrant.routing import admit_beams

    rng = np.random.default_rng(seed)
    b, w = 5, int(rng.integers(1, 40))
    counts = rng.integers(0, 300, w)
    order = np.stack([rng.permutation(w) for _ in range(b)])
    scores = np.sort(rng.normal(0, float(rng.uniform(0.1, 6)), (b, w)), axis=1)[:, ::-1].astype(np.float32)
    n_valid = rng.integers(0, w + 1, b)
    valid = np.arange(w) < n_valid[:, None]
    scores[~valid] = -np.inf
    beams = BeamResult(np.stack([np.zeros_like(order), np.where(valid, order, 0)], axis=2), scores, valid)
    hc = HybridConfig(mass_target=float(rng.uniform(0.3, 1.0)), min_fraction=float(rng.uniform(0, 0.05)),
                      max_fraction=float(rng.uniform(0.01, 1.0)), min_candidates=int(rng.integers(0, 500)))
    k, t = int(rng.integers(1, 30)), float(rng.uniform(0.05, 5))
    got = admit_beams(_Counts(counts), beams, n_docs=N, k=k, hybrid=hc, temperature=t)  # type: ignore[arg-type]
    for i, a in enumerate(got):
        pairs = beams.query(i)
        want = admit_by_mass(pairs, [int(counts[p[-1]]) for p, _ in pairs], n_docs=N, k=k, hybrid=hc, temperature=t)
        assert (a.pairs, a.n_admitted, a.reason, a.floor, a.ceiling) == (want.pairs, want.n_admitted, want.reason, want.floor, want.ceiling)
        assert a.probs == pytest.approx(want.probs) and a.mass == pytest.approx(want.mass) and a.confidence == pytest.approx(want.confidence)


def test_level1_centres_are_the_groups_means_across_blocks() -> None:
    """Each (modality, level-1 code) group's plain mean, summed block by block (40,000 rows: three blocks)."""
    rng = np.random.default_rng(4)
    vecs = rng.normal(size=(40_000, 8)).astype(np.float32)
    docids = np.stack([rng.integers(1, 3, 40_000), rng.integers(0, 5, 40_000), np.arange(40_000)], 1)
    cents, mods = level1_centres(vecs, docids)
    keys = np.unique(docids[:, :2], axis=0)
    assert cents.shape == (len(keys), 8) and cents.dtype == np.float32 and mods.tolist() == keys[:, 0].tolist()
    for row, key in enumerate(keys):
        want = vecs[(docids[:, :2] == key).all(1)].astype(np.float64).mean(0)
        np.testing.assert_allclose(cents[row], want, rtol=1e-5, atol=1e-6)
