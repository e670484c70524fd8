"""Docid schemes: fitting, assignment of new vectors, state round trips, tie-breaks and statistics."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest

from mmgr_qdrant.docids import (
    add_tiebreak,
    auto_k,
    available_schemes,
    docid_stats,
    get_scheme,
    scheme_from_state,
    used_from_docids,
)
from mmgr_qdrant.errors import ConfigError, DimensionMismatchError, InputError, NotBuiltError
from mmgr_qdrant.types import MODALITY_CODES

SCHEMES = ["rq", "hkmeans", "pq", "lsh"]


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(
    n: int = 2000, d: int = 32, clusters: int = 8, noise: float = 0.15, seed: int = 0, sizes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Well separated clusters on the sphere: (vectors, modalities, true labels)."""
    rng = np.random.default_rng(seed)
    centers = _normalize(rng.normal(size=(clusters, d)))
    p = None if sizes is None else sizes / sizes.sum()
    labels = rng.choice(clusters, size=n, p=p)
    x = _normalize(centers[labels] + noise * rng.normal(size=(n, d)) / np.sqrt(d) * 4)
    return x, rng.integers(0, 2, size=n).astype(np.int32), labels


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose bucket's majority label is their own."""
    _, bucket = np.unique(codes.reshape(len(codes), -1), axis=0, return_inverse=True)
    bucket = bucket.ravel()
    return sum(np.bincount(labels[bucket == b]).max() for b in np.unique(bucket)) / len(labels)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return clustered()


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, object]:
    x, m, _ = data
    out = {}
    for name in SCHEMES:
        params = {"bits": 6} if name == "lsh" else {"k": 8}
        s = get_scheme(name, levels=2, **params)
        s.fit(x, m, seed=0)
        out[name] = s
    return out


# -- registry -------------------------------------------------------------------------------


def test_registry_lists_the_four_schemes() -> None:
    assert set(SCHEMES) <= set(available_schemes())
    for name in SCHEMES:
        assert get_scheme(name).name == name


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="rq") as e:
        get_scheme("kmeans++")
    assert "hkmeans" in str(e.value) and "lsh" in str(e.value)


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        get_scheme("rq", codebook=12)
    with pytest.raises(ConfigError):
        get_scheme("rq", levels=0)
    with pytest.raises(ConfigError):
        get_scheme("rq", k=[4])  # one per level needed
    with pytest.raises(ConfigError):
        get_scheme("lsh", bits=40)


# -- fit and assign -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMES)
def test_assign_shapes_ranges_and_modality_column(name: str, fitted: dict, data: tuple) -> None:
    x, m, _ = data
    s = fitted[name]
    codes = s.assign(x, m)
    assert codes.shape == (len(x), 3) and codes.dtype == np.int32
    sizes = s.codebook_sizes()
    assert sizes[0] == len(MODALITY_CODES) and len(sizes) == 3
    assert (codes >= 0).all() and (codes < np.array(sizes)).all()
    assert np.array_equal(codes[:, 0], m)


@pytest.mark.parametrize("name", SCHEMES)
def test_new_vectors_get_the_same_codes_as_fitted_ones(name: str, fitted: dict, data: tuple) -> None:
    x, m, _ = data
    s = fitted[name]
    full = s.assign(x, m)
    # The same vectors one at a time and in a shuffled batch: the rule depends on the vector only.
    idx = np.random.default_rng(1).permutation(len(x))[:300]
    assert np.array_equal(s.assign(x[idx], m[idx]), full[idx])
    assert np.array_equal(s.assign(x[:1], m[:1]), full[:1])
    # Vectors never seen at fit time from the same clusters: valid codes, no refit needed.
    x_new, m_new, _ = clustered(n=50, seed=7)
    before = s.state()[1]
    codes = s.assign(x_new, m_new)
    assert codes.shape == (50, 3) and (codes < np.array(s.codebook_sizes())).all()
    after = s.state()[1]
    assert all(np.array_equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize("name", SCHEMES)
def test_codes_agree_with_true_clusters(name: str, fitted: dict, data: tuple) -> None:
    x, m, labels = data
    codes = fitted[name].assign(x, m)
    if name in ("rq", "hkmeans"):
        assert purity(codes[:, 1], labels) > 0.97  # the first semantic level alone finds the clusters
    else:
        assert purity(codes[:, 1:], labels) > 0.95  # pq / lsh: the full semantic code does


def test_fit_is_deterministic_with_the_seed(data: tuple) -> None:
    x, m, _ = data
    runs = []
    for seed in (3, 3, 4):
        s = get_scheme("rq", k=16)
        s.fit(x, m, seed=seed)
        runs.append(s.state()[1]["centroids_0"])
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_centering_lets_image_and_caption_share_codes() -> None:
    """With a modality gap, shared codebooks on centered vectors give paired image/text the same code."""
    rng = np.random.default_rng(0)
    d, concepts, per = 32, 8, 100
    centers = _normalize(rng.normal(size=(concepts, d)))
    gap = _normalize(rng.normal(size=(2, d))) * 1.2  # images and texts in two cones
    lab = np.repeat(np.arange(concepts), per)
    img = _normalize(centers[lab] + gap[1] + 0.1 * rng.normal(size=(len(lab), d)))
    txt = _normalize(centers[lab] + gap[0] + 0.1 * rng.normal(size=(len(lab), d)))
    x = np.concatenate([txt, img])
    m = np.repeat([MODALITY_CODES["text"], MODALITY_CODES["image"]], len(lab)).astype(np.int32)
    agree = {}
    for center in (True, False):
        s = get_scheme("rq", levels=1, k=concepts, center_modalities=center)
        s.fit(x, m, seed=0)
        c = s.assign(x, m)[:, 1]
        agree[center] = float((c[: len(lab)] == c[len(lab) :]).mean())
    assert agree[True] > 0.95
    assert agree[False] < agree[True]


def test_balanced_gives_a_smaller_largest_bucket() -> None:
    sizes = np.array([40.0, 20, 10, 5, 5, 5, 5, 5, 3, 2])
    x, m, _ = clustered(n=4000, d=32, clusters=10, noise=0.6, seed=2, sizes=sizes)
    largest = {}
    for balanced in (False, True):
        s = get_scheme("rq", levels=2, k=16, balanced=balanced)
        s.fit(x, m, seed=0)
        codes = s.assign(x, m)
        largest[balanced] = int(np.bincount(codes[:, 1]).max())
        assert np.array_equal(s.assign(x[:100], m[:100]), codes[:100])  # biases apply to new vectors too
    assert largest[True] < largest[False]
    assert largest[True] <= 1.5 * len(x) / 16


def test_hkmeans_children_are_local_to_their_parent(fitted: dict, data: tuple) -> None:
    x, m, _ = data
    s = fitted["hkmeans"]
    codes = s.assign(x, m)
    for parent in np.unique(codes[:, 1]):
        assert codes[codes[:, 1] == parent, 2].max() < s.child_count[1][parent]


def test_rq_refinement_runs_and_round_trips() -> None:
    x, m, _ = clustered(n=1500, d=16, noise=0.5)
    s = get_scheme("rq", k=8, refine=True, refine_epochs=2)
    s.fit(x, m, seed=0)
    assert s.fit_info["refined_mse"] <= s.fit_info["refine_start_mse"]
    params, arrays = s.state()
    assert params["refined"] == s.refined
    assert np.array_equal(scheme_from_state(params, arrays).assign(x, m), s.assign(x, m))


def test_progress_is_reported(data: tuple) -> None:
    x, m, _ = data
    seen: list[tuple[str, int, int | None]] = []
    get_scheme("rq", k=8).fit(x, m, progress=lambda stage, done, total, info: seen.append((stage, done, total)))
    assert seen == [("fit", 1, 2), ("fit", 2, 2)]


# -- state ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("balanced", [False, True])
def test_state_round_trip_gives_identical_assignments(name: str, balanced: bool, data: tuple) -> None:
    x, m, _ = data
    s = get_scheme(name, balanced=balanced)
    s.fit(x, m, seed=0)
    params, arrays = s.state()
    # Through the same formats the artifacts use: JSON and npz.
    params = json.loads(json.dumps(params))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    arrays = dict(np.load(buf))
    s2 = scheme_from_state(params, arrays)
    assert type(s2) is type(s) and s2.codebook_sizes() == s.codebook_sizes()
    assert np.array_equal(s2.assign(x, m), s.assign(x, m))


def test_bad_state_is_a_config_error(fitted: dict) -> None:
    params, arrays = fitted["rq"].state()
    with pytest.raises(ConfigError):
        scheme_from_state({k: v for k, v in params.items() if k != "name"}, arrays)
    with pytest.raises(ConfigError):
        scheme_from_state(params, {k: v for k, v in arrays.items() if k != "centroids_1"})
    with pytest.raises(ConfigError):
        type(fitted["pq"]).from_state(params, arrays)
    with pytest.raises(ConfigError):
        scheme_from_state({**params, "format": 99}, arrays)


# -- bad input and small collections ---------------------------------------------------------


def test_bad_inputs(fitted: dict, data: tuple) -> None:
    x, m, _ = data
    s = fitted["rq"]
    with pytest.raises(DimensionMismatchError):
        s.assign(x[:, :16], m)
    with pytest.raises(InputError):
        s.assign(x, np.full(len(x), 5))
    with pytest.raises(InputError):
        s.assign(x, m[:10])
    bad = x[:3].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError):
        s.assign(bad, m[:3])
    with pytest.raises(NotBuiltError):
        get_scheme("rq").assign(x, m)
    with pytest.raises(ConfigError, match="empty"):
        get_scheme("rq").fit(np.zeros((0, 8), np.float32), np.zeros(0, np.int32))


@pytest.mark.parametrize("name", SCHEMES)
def test_small_collections_shrink_the_codebooks(name: str, caplog: pytest.LogCaptureFixture) -> None:
    x, m, _ = clustered(n=5, d=16)
    s = get_scheme(name, **({"bits": 8} if name == "lsh" else {"k": 256}))
    with caplog.at_level(logging.WARNING, logger="mmgr_qdrant.docids"):
        s.fit(x, m, seed=0)
    codes = s.assign(x, m)
    assert codes.shape == (5, 3)
    if name != "lsh":  # hashing has no codebook to fit; its 8 bits stay as asked
        assert max(s.codebook_sizes()[1:]) <= 5
        assert "fewer" in caplog.text
    one = get_scheme(name)
    one.fit(x[:1], m[:1])
    assert one.assign(x[:1], m[:1]).shape == (1, 3)


def test_auto_k_scales_with_the_collection() -> None:
    assert auto_k(1, 2) == 1
    assert auto_k(1000, 2) == 16
    assert auto_k(100_000, 2) == 159
    assert auto_k(1_000_000, 2) == 256
    s = get_scheme("rq")
    x, m, _ = clustered(n=1000)
    s.fit(x, m)
    assert s.codebook_sizes() == [len(MODALITY_CODES), 16, 16]


# -- tie-breaks -----------------------------------------------------------------------------


def test_tiebreak_numbers_duplicates_in_input_order() -> None:
    sem = np.array([[0, 1, 1], [0, 1, 1], [1, 2, 0], [0, 1, 1], [0, 1, 2]])
    out = add_tiebreak(sem)
    assert out.dtype == np.int32
    assert out[:, -1].tolist() == [0, 1, 0, 2, 0]
    assert np.array_equal(out[:, :-1], sem)
    assert len(np.unique(out, axis=0)) == len(sem)


def test_tiebreak_incremental_takes_the_smallest_free_code() -> None:
    first = add_tiebreak(np.array([[0, 1, 1], [0, 1, 1], [0, 1, 1]]))
    used = used_from_docids(first)
    assert used == {(0, 1, 1): {0, 1, 2}}
    used[(0, 1, 1)].discard(1)  # a deleted document frees its code
    new = add_tiebreak(np.array([[0, 1, 1], [0, 2, 2], [0, 1, 1]]), used)
    assert new[:, -1].tolist() == [1, 0, 3]
    assert used == {(0, 1, 1): {0, 1, 2, 3}, (0, 2, 2): {0}}  # updated in place
    again = add_tiebreak(np.array([[0, 2, 2]]), used)
    assert again[0, -1] == 1


def test_tiebreak_makes_real_docids_unique(fitted: dict, data: tuple) -> None:
    x, m, _ = data
    s = fitted["rq"]
    used: dict = {}
    a = add_tiebreak(s.assign(x[:1500], m[:1500]), used)
    b = add_tiebreak(s.assign(x[1500:], m[1500:]), used)
    both = np.concatenate([a, b])
    assert len(np.unique(both, axis=0)) == len(x)
    assert np.array_equal(both[:, :-1], s.assign(x, m))


# -- statistics -----------------------------------------------------------------------------


def test_stats_on_a_hand_made_example() -> None:
    docids = np.array([[0, 1, 1], [0, 1, 1], [0, 1, 2], [1, 0, 0]])
    st = docid_stats(add_tiebreak(docids), [2, 4, 3])  # the tie-break column is ignored
    assert st.n_docs == 4
    l0, l1, l2 = st.levels
    assert (l0.used, l0.usage, l0.buckets, l0.largest_bucket, l0.mean_bucket) == (2, 1.0, 2, 3, 2.0)
    assert (l1.used, l1.usage, l1.buckets, l1.largest_bucket, l1.mean_bucket) == (2, 0.5, 2, 3, 2.0)
    assert (l2.used, l2.buckets, l2.largest_bucket, l2.mean_bucket) == (3, 3, 2, 4 / 3)
    assert l2.usage == pytest.approx(1.0)
    assert l0.perplexity == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert l2.perplexity == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))))
    assert st.collision_rate == pytest.approx(0.5)  # two of four documents share (0, 1, 1)
    assert st.duplicate_rate == pytest.approx(0.25)  # one of them needs tie-break 1
    assert st.max_tiebreak == 1
    d = json.loads(json.dumps(st.as_dict()))
    assert d["levels"][1]["usage"] == 0.5 and d["collision_rate"] == 0.5


def test_stats_rejects_mismatched_columns() -> None:
    with pytest.raises(InputError):
        docid_stats(np.zeros((3, 5), np.int32), [2, 4])
