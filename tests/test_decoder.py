"""The docid decoder: training on clustered data, the trie, constrained beam search, checkpoints."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from mmgr_qdrant.decoder import (
    DecoderConfig,
    DocidDecoder,
    DocidTrie,
    NumpyDecoder,
    TrainReport,
    beam_search,
    beam_search_numpy,
    load_checkpoint,
    save_checkpoint,
    train_decoder,
)
from mmgr_qdrant.errors import ArtifactError, ConfigError, InputError

DIM = 32
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 48, "n_prefix": 1}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: threads only add sync cost on a shared 2-core box
    yield
    torch.set_num_threads(old)


def tie_break(codes: np.ndarray) -> np.ndarray:
    """Append a column numbering the rows that share all other columns."""
    order = np.lexsort(codes.T[::-1])
    s = codes[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = np.any(s[1:] != s[:-1], axis=1)
    first = np.maximum.accumulate(np.where(new, np.arange(len(s)), 0))
    tb = np.empty(len(s), dtype=np.int64)
    tb[order] = np.arange(len(s)) - first
    return np.concatenate([codes, tb[:, None]], axis=1)


class Clusters:
    """Two modalities, 8 topics with 4 subtopics each; docids (modality, topic, subtopic, tb)."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.topic = rng.normal(size=(8, DIM))
        self.sub = rng.normal(size=(8, 4, DIM)) * 0.5
        self.gap = rng.normal(size=DIM)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        mod, c1, c2 = rng.integers(0, 2, n), rng.integers(0, 8, n), rng.integers(0, 4, n)
        x = self.topic[c1] + self.sub[c1, c2] + 0.15 * rng.normal(size=(n, DIM))
        x = x + np.where(mod[:, None] == 1, 1.0, -1.0) * self.gap * 0.4
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), np.stack([mod, c1, c2], axis=1).astype(np.int64)


@pytest.fixture(scope="module")
def data() -> tuple[Clusters, np.ndarray, np.ndarray]:
    world = Clusters()
    x, labels = world.sample(1600, seed=1)
    return world, x, tie_break(labels)


@pytest.fixture(scope="module")
def trained(data: tuple[Clusters, np.ndarray, np.ndarray]) -> tuple[DocidDecoder, TrainReport]:
    _, x, codes = data
    calls: list[tuple[str, int, int | None]] = []
    config = DecoderConfig(DIM, tuple(int(v) + 1 for v in codes.max(0)), **TINY)
    model, report = train_decoder(
        x, codes, doc_vectors=x, doc_index=np.arange(len(x)), config=config, epochs=20,
        batch_size=128, lr=1e-2, noise_std=0.1, val_fraction=0.1, patience=4, seed=0,
        progress=lambda stage, done, total, info: calls.append((stage, done, total)),
    )  # fmt: skip
    assert calls and all(c[0] == "train" for c in calls)
    return model, report


def test_training_learns_cluster_codes(trained: tuple[DocidDecoder, TrainReport]) -> None:
    _, report = trained
    assert report.val_level_accuracy[0] >= 0.97  # modality
    assert report.val_level_accuracy[1] >= 0.95  # topic
    assert report.n_val == 160 and report.n_train == 1440
    assert math.isfinite(report.train_contrastive_loss) and report.train_contrastive_loss > 0
    assert report.best_epoch >= 1 and report.history


def test_beam_finds_the_cluster_of_new_noisy_queries(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    world, _, codes = data
    model, _ = trained
    q, labels = world.sample(300, seed=7)  # never seen in training
    q = q + np.random.default_rng(3).normal(size=q.shape).astype(np.float32) * 0.02
    res = beam_search(model, DocidTrie(codes), q, beam_size=5, depth=2)
    assert res.prefixes.shape == (300, 5, 2) and res.valid.all()
    assert np.mean(np.all(res.prefixes[:, 0] == labels[:, :2], axis=1)) >= 0.9


def _prefix_set(codes: np.ndarray, depth: int) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in row[:depth]) for row in codes}


def test_beam_only_emits_prefixes_that_exist(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    world, _, codes = data
    model, _ = trained
    # drop whole topics, so the decoder's favourite prefixes are missing for many queries
    kept = codes[~np.isin(codes[:, 1], [0, 1, 2]) & ~((codes[:, 0] == 1) & (codes[:, 2] == 3))]
    trie = DocidTrie(kept)
    q, _ = world.sample(64, seed=9)
    for depth in (1, 2, 3, 4):
        allowed = _prefix_set(kept, depth)
        res = beam_search(model, trie, q, beam_size=12, depth=depth)
        emitted = {tuple(int(c) for c in p) for p in res.prefixes[res.valid]}
        assert emitted <= allowed
        assert (res.valid.sum(1) == min(12, len(allowed))).all()
        scores = np.where(res.valid, res.scores, -1e30)
        assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
        assert np.all(res.scores[res.valid] <= 1e-6)  # log-probabilities


def _masked_score(model: DocidDecoder, codes: np.ndarray, q: torch.Tensor, prefix: tuple[int, ...]) -> float:
    """Brute force: sum over levels of log-softmax restricted to the children that exist."""
    L = codes.shape[1]
    full = torch.tensor([list(prefix) + [0] * (L - len(prefix))])
    with torch.no_grad():
        logits = model(q.unsqueeze(0), full)
    total = 0.0
    for t, code in enumerate(prefix):
        siblings = sorted({int(r[t]) for r in codes if tuple(r[:t]) == prefix[:t]})
        lp = torch.log_softmax(logits[t][0, siblings], dim=0)
        total += float(lp[siblings.index(code)])
    return total


def test_beam_scores_equal_brute_force_on_a_tiny_trie() -> None:
    torch.manual_seed(0)
    vocab = (2, 3, 4, 3)
    model = DocidDecoder(DecoderConfig(8, vocab, n_layer=2, n_head=2, n_embd=16, n_prefix=2)).eval()
    for p in model.parameters():  # larger weights than the init, so the scores differ clearly
        p.data.normal_(0, 0.5)
    rng = np.random.default_rng(0)
    codes = np.unique(np.stack([rng.integers(0, v, 40) for v in vocab], 1), axis=0)
    codes = codes[rng.permutation(len(codes))[:15]]
    trie = DocidTrie(np.concatenate([codes, codes[:3]]))  # duplicates are ignored
    assert len(trie) == len(codes)
    queries = torch.randn(4, 8)
    for depth in (1, 2, 3, 4):
        prefixes = _prefix_set(codes, depth)
        res = beam_search(model, trie, queries, beam_size=40, depth=depth)  # exhaustive
        for i in range(len(queries)):
            got = dict(res.query(i))
            assert set(got) == prefixes
            brute = {p: _masked_score(model, codes, queries[i], p) for p in prefixes}
            for p, s in got.items():
                assert s == pytest.approx(brute[p], abs=1e-4)
            assert res.query(i)[0][0] == max(brute, key=brute.__getitem__)
            assert math.fsum(math.exp(s) for s in got.values()) == pytest.approx(1.0, abs=1e-4)
        assert not res.valid[:, len(prefixes) :].any()
        assert np.isneginf(res.scores[:, len(prefixes) :]).all()
        small = beam_search(model, trie, queries, beam_size=3, depth=depth)
        assert small.prefixes.shape == (4, 3, depth)
        assert (small.valid.sum(1) == min(3, len(prefixes))).all()
        np.testing.assert_allclose(small.scores[:, :1], res.scores[:, :1], atol=1e-5)


def test_force_prefix_restricts_results(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    world, _, codes = data
    model, _ = trained
    q, _ = world.sample(16, seed=11)
    res = beam_search(model, DocidTrie(codes), q, beam_size=6, depth=3, force_prefix=(1,))
    assert res.valid.all() and (res.prefixes[:, :, 0] == 1).all()
    none = beam_search(model, DocidTrie(codes[codes[:, 0] == 0]), q, beam_size=6, depth=2, force_prefix=(1,))
    assert not none.valid.any()


def test_batch_equals_single(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    world, _, codes = data
    model, _ = trained
    trie = DocidTrie(codes)
    q, _ = world.sample(10, seed=5)
    batch = beam_search(model, trie, q, beam_size=8, depth=3)
    chunked = beam_search(model, trie, torch.from_numpy(q), beam_size=8, depth=3, batch_size=3)
    np.testing.assert_array_equal(batch.prefixes, chunked.prefixes)
    for i in range(len(q)):
        one = beam_search(model, trie, q[i], beam_size=8, depth=3)
        np.testing.assert_array_equal(one.prefixes[0], batch.prefixes[i])
        np.testing.assert_allclose(one.scores[0], batch.scores[i], atol=1e-5)


def test_checkpoint_round_trip_and_corruption(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    world, _, codes = data
    model, _ = trained
    blob = save_checkpoint(model)
    again = load_checkpoint(blob)
    assert again.config == model.config and not again.training
    q, _ = world.sample(8, seed=13)
    qt, ct = torch.from_numpy(q), torch.from_numpy(codes[:8])
    with torch.no_grad():
        for a, b in zip(model(qt, ct), again(qt, ct)):
            assert torch.equal(a, b)
    trie = DocidTrie(codes)
    r1 = beam_search(model, trie, q, beam_size=5, depth=3)
    r2 = beam_search(again, trie, q, beam_size=5, depth=3)
    np.testing.assert_array_equal(r1.prefixes, r2.prefixes)
    np.testing.assert_array_equal(r1.scores, r2.scores)

    flipped = bytearray(blob)
    for i in range(len(blob) // 3, len(blob) // 3 + 64):
        flipped[i] ^= 0xFF
    other = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, other)
    # right envelope and checksum, wrong content
    foreign = b"MMGRDEC1" + hashlib.sha256(other.getvalue()).digest() + other.getvalue()
    for bad in (blob[: len(blob) // 2], b"not a checkpoint", bytes(flipped), other.getvalue(), b"", foreign):
        with pytest.raises(ArtifactError):
            load_checkpoint(bad)


def test_trie_add_remove_and_arrays(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    world, _, codes = data
    model, _ = trained
    trie = DocidTrie(codes[codes[:, 1] != 5])
    q, _ = world.sample(200, seed=17)
    assert not np.any(beam_search(model, trie, q, beam_size=4, depth=2).prefixes[..., 1] == 5)
    added = codes[codes[:, 1] == 5]
    assert trie.add(added) == len(added) and trie.add(added[:3]) == 0
    assert len(trie) == len(codes)
    assert trie.contains(np.array([[0, 5], [1, 5]])).all()
    hit5 = beam_search(model, trie, q, beam_size=4, depth=2).prefixes[:, 0, 1] == 5
    assert hit5.any()  # queries from topic 5 find it again
    assert trie.remove(added) == len(added) and trie.remove(added) == 0
    res = beam_search(model, trie, q, beam_size=4, depth=3)
    assert not np.any(res.prefixes[res.valid][:, 1] == 5)

    back = DocidTrie.from_arrays(trie.to_arrays())
    np.testing.assert_array_equal(back.codes, trie.codes)
    assert [back.num_nodes(d) for d in range(5)] == [trie.num_nodes(d) for d in range(5)]
    np.testing.assert_array_equal(back.prefixes(2), np.unique(trie.codes[:, :2], axis=0))
    with pytest.raises(ArtifactError):
        DocidTrie.from_arrays({"wrong": np.zeros(3)})

    empty = DocidTrie(n_levels=4)
    assert len(empty) == 0 and empty.add(codes[:2]) == 2 and empty.remove(codes[:2]) == 2
    res = beam_search(model, empty, q[:3], beam_size=4, depth=2)
    assert not res.valid.any() and res.prefixes.shape == (3, 4, 2)


def test_bad_inputs_raise_library_errors(trained: tuple[DocidDecoder, TrainReport]) -> None:
    model, _ = trained
    cfg = model.config
    trie = DocidTrie(np.zeros((1, cfg.n_levels), dtype=np.int64))
    with pytest.raises(InputError):
        beam_search(model, trie, np.zeros((2, DIM + 1)), beam_size=3, depth=2)
    with pytest.raises(InputError):
        beam_search(model, trie, np.zeros((2, DIM)), beam_size=3, depth=cfg.n_levels + 1)
    with pytest.raises(ConfigError):
        big = np.zeros((1, cfg.n_levels), dtype=np.int64)
        big[0, 1] = cfg.vocab_sizes[1]
        beam_search(model, DocidTrie(big), np.zeros((1, DIM)), beam_size=3, depth=2)
    with pytest.raises(InputError):
        DocidTrie(np.array([[0, -1, 0, 0]]))
    assert DecoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        DecoderConfig.from_dict({**cfg.to_dict(), "surprise": 1})
    with pytest.raises(ConfigError):
        DecoderConfig(DIM, (2, 3), n_head=5, n_embd=48)
    with pytest.raises(InputError):
        train_decoder(np.zeros((4, DIM)), np.zeros((3, 2), dtype=np.int64))


def test_early_stopping_and_time_budget() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    y = rng.integers(0, 6, size=(400, 2))  # unlearnable: val loss stops improving
    config = DecoderConfig(16, (6, 6), **TINY)
    _, rep = train_decoder(x, y, config=config, epochs=80, batch_size=64, lr=1e-2, patience=2, seed=0)
    assert rep.stop_reason == "patience" and rep.epochs_run < 80
    assert rep.best_epoch == rep.epochs_run - 2
    assert rep.train_contrastive_loss == 0.0
    _, rep = train_decoder(x, y, config=config, epochs=80, batch_size=64, time_budget_s=0.0)
    assert rep.stop_reason == "time_budget" and rep.steps == 1 and rep.epochs_run == 1


def test_excluded_pairs_are_neither_trained_nor_validated_on() -> None:
    """``exclude`` holds pairs out: the counts leave them out, and a cluster that only they label
    is learned when they are trained on and not when they are excluded."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x[:60, 1] += 6.0  # a cluster of its own
    y = np.stack([np.zeros(300, np.int64), (x[:, 0] > 0).astype(np.int64)], 1)  # level 1: the sign of x0 ...
    y[:60, 1] = 1  # ... except in the cluster, always 1
    out = np.zeros(300, bool)
    out[:60] = True
    config = DecoderConfig(16, (1, 2), **TINY)
    trie = DocidTrie(np.array([[0, 0], [0, 1]]))
    kw: dict[str, object] = {"config": config, "epochs": 60, "batch_size": 32, "lr": 1e-2, "seed": 0, "val_fraction": 0.1, "patience": 60}
    accuracy: dict[str, tuple[float, float]] = {}
    for name, ex in (("excluded", out), ("trained", None)):
        model, rep = train_decoder(x, y, exclude=ex, **kw)
        assert rep.n_train + rep.n_val == (240 if ex is not None else 300)
        got = beam_search(model, trie, x, beam_size=1, depth=2).prefixes[:, 0, 1]
        accuracy[name] = (float(np.mean(got[:60] == 1)), float(np.mean(got[60:] == y[60:, 1])))
    assert accuracy["trained"][0] >= 0.85 and accuracy["excluded"][0] <= 0.6  # the cluster is learned only from its pairs
    assert accuracy["excluded"][1] >= 0.8  # the rule is learned either way
    for bad in (np.ones(300, bool), np.zeros(299, bool), np.zeros(300, np.int64)):
        with pytest.raises(InputError):
            train_decoder(x, y, config=config, epochs=1, exclude=bad)


def test_trie_updates_match_a_set_and_copies_are_independent() -> None:
    """add/remove merge into the sorted codes; the result equals a trie built from scratch."""
    rng = np.random.default_rng(5)
    model: set[tuple[int, ...]] = set()
    trie = DocidTrie(n_levels=3)
    for step in range(60):
        rows = rng.integers(0, [2, 300, 1000], size=(int(rng.integers(0, 40)), 3))
        before = trie.copy()
        if step % 3 == 2 and model:  # remove some present and some absent rows
            present = np.asarray(sorted(model))[rng.integers(0, len(model), 10)]
            rows = np.concatenate([rows, present])
            gone = {tuple(map(int, r)) for r in rows} & model
            assert trie.remove(rows) == len(gone)
            model -= gone
        else:
            rows = np.concatenate([rows, rows[:3]])  # duplicates inside the batch
            new = {tuple(map(int, r)) for r in rows} - model
            assert trie.add(rows) == len(new)
            model |= new
        expected = np.asarray(sorted(model), dtype=np.int64).reshape(-1, 3)
        np.testing.assert_array_equal(trie.codes, expected)
        np.testing.assert_array_equal(trie.codes, DocidTrie(expected, n_levels=3).codes)
        assert len(before) <= len(model) + 50 and not before.codes.flags.writeable  # the copy kept its own codes
    assert [trie.num_nodes(d) for d in range(4)] == [DocidTrie(trie.codes).num_nodes(d) for d in range(4)]
    big = rng.integers(0, 2**40, size=(50, 3))  # codes past 32 bits still order correctly
    t = DocidTrie(big[:25])
    t.add(big[25:])
    np.testing.assert_array_equal(t.codes, DocidTrie(big).codes)


@pytest.mark.parametrize("bias", [True, False])
def test_numpy_router_equals_the_torch_path(bias: bool) -> None:
    """The numpy copy of the decoder returns the torch path's prefixes, validity and scores."""
    torch.manual_seed(3)
    cfg = DecoderConfig(embed_dim=DIM, vocab_sizes=(2, 16, 16, 64), n_layer=2, n_head=4, n_embd=64, n_prefix=2, bias=bias)
    model = DocidDecoder(cfg).eval()
    with torch.no_grad():  # trained-looking weights: the init's are nearly uniform and hide mistakes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, v, 600) for v in (2, 16, 16, 64)], 1)
    trie = DocidTrie(codes)
    fast = NumpyDecoder(model)
    q = rng.normal(size=(40, DIM)).astype(np.float32)
    for depth, force, beam in [(1, (), 4), (2, (), 8), (2, (1,), 64), (3, (), 16), (4, (0,), 32), (4, (), 300)]:
        ref = beam_search(model, trie, q, beam_size=beam, depth=depth, force_prefix=force)
        got = beam_search_numpy(fast, trie, q, beam_size=beam, depth=depth, force_prefix=force)
        assert (got.valid == ref.valid).all()
        np.testing.assert_allclose(got.scores[got.valid], ref.scores[ref.valid], atol=1e-4)
        # float32 rounding may swap two hypotheses whose scores differ by ~1e-5, nothing more
        swapped = (got.prefixes != ref.prefixes).any(-1)
        assert swapped.mean() < 0.01
        for i, j in np.argwhere(swapped):
            row = ref.scores[i]
            assert np.isclose(row, got.scores[i, j], atol=1e-4).sum() >= 2  # a near-tie in the reference
            assert tuple(got.prefixes[i, j]) in {tuple(p) for p in ref.prefixes[i][np.isclose(row, got.scores[i, j], atol=1e-4)]} or j >= beam - 2
        assert [p for p, _ in got.query(3)][:10] == [p for p, _ in ref.query(3)][:10]
    one = beam_search_numpy(fast, trie, q[5], beam_size=8, depth=2)  # a single (d,) vector is one query
    assert one.prefixes.shape == (1, 8, 2)
    with pytest.raises(InputError):
        beam_search_numpy(fast, trie, q[:, :5], beam_size=8, depth=2)
    with pytest.raises(ConfigError):
        beam_search_numpy(fast, DocidTrie(codes[:, :3]), q, beam_size=8, depth=2)


@pytest.mark.parametrize("bias", [True, False])
def test_scoring_every_prefix_equals_a_beam_that_holds_them_all(bias: bool) -> None:
    """``score_prefixes_numpy`` gives every existing prefix the score the numpy beam search gives it
    when its beam holds every prefix (it prunes nothing then), with and without a forced start."""
    from mmgr_qdrant.decoder.fast import prefix_plan, score_prefixes_numpy

    torch.manual_seed(4)
    cfg = DecoderConfig(embed_dim=DIM, vocab_sizes=(3, 16, 16, 64), n_layer=2, n_head=4, n_embd=64, n_prefix=2, bias=bias)
    model = DocidDecoder(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    rng = np.random.default_rng(1)
    codes = np.stack([rng.integers(0, 2, 500), *(rng.integers(0, v, 500) for v in (16, 16, 64))], 1)  # code 2 of level 0 unused
    trie = DocidTrie(codes)
    fast = NumpyDecoder(model)
    q = rng.normal(size=(7, DIM)).astype(np.float32)
    for depth, force in [(1, ()), (2, ()), (2, (1,)), (3, ()), (3, (0,)), (3, (0, 5)), (2, (2,)), (4, (1, 3, 7))]:
        plan = prefix_plan(trie, depth, force)
        want = {tuple(p) for p in trie.prefixes(depth).tolist() if tuple(p[: len(force)]) == force}
        assert [tuple(p) for p in plan.prefixes.tolist()] == sorted(want)
        got = score_prefixes_numpy(fast, plan, q)
        assert got.shape == (len(q), len(want))
        if not want:
            continue
        ref = beam_search_numpy(fast, trie, q, beam_size=len(want), depth=depth, force_prefix=force)
        assert ref.valid.all()
        for i in range(len(q)):
            by_prefix = {tuple(p): s for p, s in ref.query(i)}
            np.testing.assert_allclose(got[i], [by_prefix[tuple(p)] for p in plan.prefixes.tolist()], atol=1e-4)


def test_training_continues_from_an_initial_decoder(
    data: tuple[Clusters, np.ndarray, np.ndarray], trained: tuple[DocidDecoder, TrainReport]
) -> None:
    """A retrain starts from the given decoder: one short epoch keeps what it knew; a fresh start does not."""
    _, x, codes = data
    model, _ = trained
    config = model.config
    kw = {"config": config, "epochs": 1, "batch_size": 1600, "lr": 1e-6, "val_fraction": 0.1, "seed": 3}
    _, rep = train_decoder(x, codes, init=model, **kw)
    _, cold_rep = train_decoder(x, codes, **kw)
    assert rep.val_level_accuracy[1] >= 0.95 and cold_rep.val_level_accuracy[1] < 0.5
    # a decoder of another shape cannot seed this one: training starts from scratch, no error
    other = DecoderConfig(DIM, tuple(v + 1 for v in config.vocab_sizes), **TINY)
    fresh, fresh_rep = train_decoder(x, codes, init=model, **{**kw, "config": other})
    assert fresh.config == other and fresh_rep.val_level_accuracy[1] < 0.5
