"""Composed queries (a reference image changed by a text): weighted and trained fusion; both backends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import ArtifactError, InputError, MultimodalRetriever, NotFoundError
from mmgr_qdrant.fusion import FUSION_BLOB, TrainedFusion, check_weight, train_fusion, weighted_fusion
from mmgr_qdrant.setops import Composed, Q
from tests.helpers import make_image

# A wide, unregularized head: these tests check that training fits its triples, not generalization.
FIT: dict[str, Any] = {"hidden": 256, "dropout": 0.0, "lr": 2e-3, "weight_decay": 1e-4}

TEXTS = ["a red car", "a green tree", "a blue boat", "a yellow sun", "a black cat", "a white dog"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# -- the fusion functions -------------------------------------------------------------------------

def test_weighted_fusion_moves_from_image_to_text() -> None:
    rng = np.random.default_rng(0)
    img, txt = _unit(rng.normal(size=16)), _unit(rng.normal(size=16))
    assert np.allclose(weighted_fusion(img, txt, 0.0), img, atol=1e-6)
    assert np.allclose(weighted_fusion(img, txt, 1.0), txt, atol=1e-6)
    sims = [float(weighted_fusion(img, txt, w) @ txt) for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert sims == sorted(sims) and sims[0] < sims[-1]
    assert np.isclose(np.linalg.norm(weighted_fusion(img, txt, 0.3)), 1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_fusion_weight_is_validated(bad: Any) -> None:
    with pytest.raises(InputError, match="fusion_weight"):
        check_weight(bad)


def test_opposite_embeddings_at_half_weight_are_an_error() -> None:
    v = _unit(np.arange(1, 9, dtype=np.float32))
    with pytest.raises(InputError, match="cancel out"):
        weighted_fusion(v, -v, 0.5)


@pytest.mark.slow
def test_trained_fusion_learns_triples_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    d, n_img, n_mod = 32, 20, 4
    imgs, mods = _unit(rng.normal(size=(n_img, d))), _unit(rng.normal(size=(n_mod, d)))
    corpus = _unit(rng.normal(size=(n_img * n_mod, d)))  # target of (i, j) is corpus[i * n_mod + j]: not a sum
    i, j = np.meshgrid(np.arange(n_img), np.arange(n_mod), indexing="ij")
    i, j = i.ravel(), j.ravel()
    module = train_fusion(imgs[i], mods[j], corpus[i * n_mod + j], epochs=150, batch_size=32, seed=0, val_fraction=0.0, **FIT)
    fused = module.fuse(imgs[i], mods[j])
    trained_r1 = float(np.mean((fused @ corpus.T).argmax(1) == i * n_mod + j))
    untrained_r1 = float(np.mean((weighted_fusion(imgs[i], mods[j], 0.5) @ corpus.T).argmax(1) == i * n_mod + j))
    assert trained_r1 >= 0.9 and untrained_r1 <= 0.2, (trained_r1, untrained_r1)
    again = TrainedFusion.from_bytes(module.to_bytes())
    assert np.allclose(again.fuse(imgs[:3], mods[:3]), module.fuse(imgs[:3], mods[:3]), atol=1e-6)
    assert module.fuse(imgs[0], mods[0]).shape == (d,) and module.info["n_triples"] == n_img * n_mod
    raw = bytearray(module.to_bytes())
    raw[len(raw) // 2] ^= 0xFF
    with pytest.raises(ArtifactError, match="fusion"):
        TrainedFusion.from_bytes(bytes(raw))
    with pytest.raises(InputError, match="triples"):
        train_fusion(imgs[:1], mods[:1], corpus[:1])
    # with the whole corpus as negatives and indices as targets (several per triple allowed)
    shared = train_fusion(imgs[i], mods[j], [[x] for x in i * n_mod + j], corpus=corpus, epochs=60, seed=0, val_fraction=0.0, **FIT)
    assert float(np.mean((shared.fuse(imgs[i], mods[j]) @ corpus.T).argmax(1) == i * n_mod + j)) >= 0.9
    with pytest.raises(InputError, match="corpus rows"):
        train_fusion(imgs[:2], mods[:2], [[0], [len(corpus)]], corpus=corpus)
    with pytest.raises(InputError, match="Unknown fusion settings"):
        train_fusion(imgs[:2], mods[:2], corpus[:2], epoch=3)


def test_composed_expression() -> None:
    c = Q.image("ref.png") + Q.text("in red")
    assert isinstance(c, Composed) and c.image.source == "ref.png" and c.text.text == "in red" and c.weight is None
    assert Q.text("in red") + Q.image("ref.png") == c
    assert Q.composed("ref.png", "in red", weight=0.25).weight == 0.25
    with pytest.raises(InputError, match="fusion_weight"):
        Q.composed("ref.png", "in red", weight=2)
    with pytest.raises(InputError, match="composed"):
        _ = c & Q.text("cat")
    with pytest.raises(InputError, match="composed"):
        _ = Q.text("cat") | c
    with pytest.raises(InputError, match="composed"):
        _ = ~c
    with pytest.raises(InputError, match=r"'\+'"):
        _ = Q.text("a") + Q.text("b")


# -- through the retriever, both backends ---------------------------------------------------------

@pytest.fixture
def filled(retriever: MultimodalRetriever) -> MultimodalRetriever:
    retriever.add_images([make_image(s) for s in range(12)], ids=list(range(1, 13)))
    retriever.add_texts(TEXTS, ids=list(range(100, 100 + len(TEXTS))))
    return retriever


def test_composed_search_shifts_toward_the_text(filled: MultimodalRetriever) -> None:
    ref = make_image(3)
    text_vec = filled.encoder.encode_texts(["a red car"])[0]
    image_vec = filled.encoder.encode_images([ref])[0]

    def toward_text(w: float) -> float:  # how much nearer the text than the image the top hits are
        hits = filled.search(image=ref, text="a red car", k=5, fusion_weight=w)
        vecs = np.stack([v for r in filled.store.retrieve([h.id for h in hits], with_vectors=True) for v in [r.vector]])
        return float(np.mean(vecs @ text_vec - vecs @ image_vec))

    assert filled.search(image=ref, text="a red car", k=1, fusion_weight=0.0)[0].id == 4  # the image itself
    assert filled.search(image=ref, text="a red car", k=1, fusion_weight=1.0)[0].id == 100  # the text itself
    shifts = [toward_text(w) for w in (0.0, 0.5, 1.0)]
    assert shifts[0] < shifts[1] <= shifts[2], shifts
    # the plain query string with image= and the Q form are the same composed query
    a = [h.id for h in filled.search("a red car", image=ref, k=5, fusion_weight=0.7)]
    b = [h.id for h in filled.search(Q.composed(ref, "a red car", weight=0.7), k=5)]
    c = [h.id for h in filled.search(image=ref, text="a red car", k=5, fusion_weight=0.7, mode="dense")]
    assert a == b == c


def test_composed_search_validates(filled: MultimodalRetriever) -> None:
    for bad in (-0.5, 1.01, "high"):
        with pytest.raises(InputError, match="fusion_weight"):
            filled.search(image=make_image(0), text="red", fusion_weight=bad)
    with pytest.raises(InputError, match="composed queries only"):
        filled.search("red", fusion_weight=0.5)
    with pytest.raises(InputError, match="once"):
        filled.search("red", image=make_image(0), text="blue")
    with pytest.raises(InputError, match="empty"):
        filled.search(image=make_image(0), text="  ")


@pytest.mark.slow
def test_trained_fusion_is_used_and_saved_with_the_index(connect: Any, tiny_encoder: Any) -> None:
    kw = connect()
    refs = [make_image(s) for s in range(8)]
    mods = ["in red", "in blue"]
    with MultimodalRetriever.create("fuse", encoder=tiny_encoder, **kw) as r:
        r.add_images(refs, ids=list(range(1, 9)))
        targets = r.add_images([make_image(100 + s) for s in range(16)], ids=list(range(200, 216)))
        triples = [(refs[i], mods[j], targets[i * 2 + j]) for i in range(8) for j in range(2)]
        refs_t, mods_t, tgts_t = zip(*triples)

        def recall_at_1(weight: float | None) -> float:
            hits = [r.search(image=a, text=b, k=1, fusion_weight=weight, modality="image")[0].id for a, b, _ in triples]
            return float(np.mean([h == t for h, (_, _, t) in zip(hits, triples)]))

        before = recall_at_1(None)  # no module yet: the weighted sum at 0.5
        assert before == recall_at_1(0.5)
        info = r.train_fusion(list(refs_t), list(mods_t), list(tgts_t), epochs=200, batch_size=16, val_fraction=0.0, **FIT)
        assert info["n_triples"] == 16 and r.store.get_blob(FUSION_BLOB)
        after = recall_at_1(None)
        assert after >= 0.75 > before, (before, after)
        assert recall_at_1(0.5) == before  # an explicit weight still asks for the weighted sum
        with pytest.raises(NotFoundError):
            r.train_fusion([refs[0], refs[1]], ["a", "b"], [200, 999])
        with pytest.raises(InputError, match="one of each"):
            r.train_fusion([refs[0]], ["a", "b"], [200])
    with MultimodalRetriever.open("fuse", encoder=tiny_encoder, **kw) as r2:
        hits = [r2.search(image=a, text=b, k=1, modality="image")[0].id for a, b, _ in triples]
        assert float(np.mean([h == t for h, (_, _, t) in zip(hits, triples)])) == after


def test_held_out_triples_keep_the_best_epoch() -> None:
    """Targets that cannot be learned (random): the held-out loss never improves, the start is kept."""
    rng = np.random.default_rng(2)
    a, b, t = (_unit(rng.normal(size=(60, 16))) for _ in range(3))
    module = train_fusion(a, b, t, epochs=30, val_fraction=0.25, patience=5, seed=0)
    assert module.info["n_val"] == 15 and module.info["best_epoch"] == 0 and module.info["epochs"] <= 30
    assert np.allclose(module.fuse(a, b), weighted_fusion(a, b, 0.5), atol=1e-5)  # still the plain weighted sum
    with pytest.raises(InputError, match="val_fraction"):
        train_fusion(a, b, t, val_fraction=1.0)
