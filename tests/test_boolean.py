"""Boolean queries and cross-modal links against real stores, on both backends.

The algebra laws are checked on the sets Qdrant returns, against the sets computed in Python
from the stored payloads with ``setops.evaluate_filter``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import InputError, MultimodalRetriever, NotBuiltError, NotFoundError
from mmgr_qdrant.generative import retag
from mmgr_qdrant.setops import Q, evaluate_filter
from tests.helpers import DECODER, clustered


@pytest.fixture(scope="module", params=["edge", "local"])
def index(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> Any:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:") if request.param == "local" else None
    kwargs = {"client": client} if client is not None else {"path": tmp_path_factory.mktemp("bool")}
    r = MultimodalRetriever.create("b", encoder=tiny_encoder, decoder_params=DECODER, **kwargs)
    x, labels = clustered(r.config.dim, seed=3)
    colors = ["red", "green", "blue"]
    payloads = [{"label": int(l), "color": colors[i % 3], "size": i % 7} for i, l in enumerate(labels)]
    ids = list(r.add_embeddings(x, modality="image", payloads=payloads))
    r.add_texts(["a red thing", "a green thing", "a blue thing"], payloads=[{"color": c} for c in colors])
    r.build()
    yield r, x, ids
    r.close()
    if client is not None:
        client.close()


def stored(r: MultimodalRetriever) -> dict[Any, dict[str, Any]]:
    return {rec.id: rec.payload for page in r.store.scroll() for rec in page}


def qdrant_set(r: MultimodalRetriever, expr: Any) -> set[Any]:
    compiled = r.compile(expr, allow_negative_only=True)
    flt = retag(compiled.filter, r.index.generative.generation)  # type: ignore[union-attr]
    return {rec.id for page in r.store.scroll(flt) for rec in page}


def python_set(r: MultimodalRetriever, expr: Any) -> set[Any]:
    compiled = r.compile(expr, allow_negative_only=True)
    return evaluate_filter(retag(compiled.filter, r.index.generative.generation), stored(r))  # type: ignore[union-attr]


ATOMS = {
    "A": Q.where({"color": "red"}),
    "B": Q.where({"size": {"lt": 3}}),
    "C": Q.text("a blue thing"),
    "D": Q.modality("image"),
}


@pytest.mark.parametrize(
    "left,right",
    [
        (~(ATOMS["A"] & ATOMS["B"]), ~ATOMS["A"] | ~ATOMS["B"]),  # De Morgan
        (~(ATOMS["A"] | ATOMS["C"]), ~ATOMS["A"] & ~ATOMS["C"]),  # De Morgan
        (~~ATOMS["C"], ATOMS["C"]),  # double negation
        (ATOMS["A"] & (ATOMS["B"] | ATOMS["C"]), (ATOMS["A"] & ATOMS["B"]) | (ATOMS["A"] & ATOMS["C"])),
        (ATOMS["A"] | (ATOMS["B"] & ATOMS["D"]), (ATOMS["A"] | ATOMS["B"]) & (ATOMS["A"] | ATOMS["D"])),
    ],
)
def test_algebra_laws_hold_on_stored_sets(index: Any, left: Any, right: Any) -> None:
    r, *_ = index
    lq, rq = qdrant_set(r, left), qdrant_set(r, right)
    assert lq == rq
    assert lq == python_set(r, left)


def test_not_excludes_what_the_concept_matches(index: Any) -> None:
    r, _x, _ids = index
    concept = Q.text("a blue thing")
    default = r.cutoff
    r.cutoff = r.negative_cutoff  # a concept only under NOT takes the negative cut-off; compare like with like
    try:
        matched = qdrant_set(r, concept)
        rest = qdrant_set(r, Q.modality("image") & ~concept) | qdrant_set(r, Q.modality("text") & ~concept)
    finally:
        r.cutoff = default
    assert matched
    assert not matched & rest
    assert matched | rest == set(stored(r))
    # with both polarities in one query, the concept takes the positive cut-off both times: a partition again
    assert qdrant_set(r, concept | ~concept) == set(stored(r)) and not qdrant_set(r, concept & ~concept)


def test_search_with_expression_ranks_positive_atoms(index: Any) -> None:
    r, _x, _ids = index
    hits = r.search(Q.modality("image") & Q.where({"color": "red"}) & ~Q.where({"size": 0}), k=5, explain=True)
    assert hits and all(h.payload["color"] == "red" and h.payload["size"] != 0 for h in hits)
    assert "filter" in hits[0].explain["query"]
    parsed = r.search(Q.parse("modality:image AND color=red AND NOT size=0"), k=5)
    assert [h.id for h in parsed] == [h.id for h in hits]


def test_ids_atom_and_unknown_ids(index: Any) -> None:
    r, _x, ids = index
    assert {h.id for h in r.search(Q.ids(ids[:3]), k=10)} == set(ids[:3])
    with pytest.raises(NotFoundError, match="not in collection"):
        r.search(Q.ids([999_999]), k=3)


def test_empty_and_negative_only_queries_are_explained(index: Any) -> None:
    r, *_ = index
    with pytest.raises(InputError, match="empty"):
        Q.parse("   ")
    hits = r.search(~Q.where({"color": "red"}), k=400)  # "everything except", in store order
    assert hits and all(h.payload.get("color") != "red" for h in hits)


def test_unreadable_query_image(index: Any, tmp_path: Any) -> None:
    r, *_ = index
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png"):
        r.search(Q.image(bad) & Q.modality("image"), k=3)


def test_concepts_need_a_build(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(["x"])
    with pytest.raises(NotBuiltError, match="build"):
        retriever.search(Q.text("cat") & ~Q.text("dog"), k=3)


def test_links_both_ways_related_and_cleanup(retriever: MultimodalRetriever) -> None:
    from tests.helpers import make_image

    img_ids = retriever.add_images([make_image(1), make_image(2)], captions=["a red square", "a blue circle"], caption_docs=True)
    assert retriever.count("text") == 2
    rel = retriever.related(img_ids[0], modality="text", k=2)
    assert rel[0].text == "a red square" and rel[0].explain == {"relation": "linked"}
    text_id = rel[0].id
    back = retriever.related(text_id, modality="image", k=1)
    assert back[0].id == img_ids[0]
    assert retriever.get([img_ids[0]])[0].text == "a red square"  # the caption travels with the image
    retriever.delete([text_id])
    rel = retriever.related(img_ids[0], modality="text", k=2)
    assert all(h.explain == {"relation": "nearest"} for h in rel)
    with pytest.raises(NotFoundError):
        retriever.link(img_ids[0], 424242)
    with pytest.raises(InputError, match="itself"):
        retriever.link(img_ids[0], img_ids[0])


# -- ranking -------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _ranking_index(r: MultimodalRetriever, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Background images around the two test concepts, built; every prefix admitted for positives."""
    ta, tb = r.encoder.encode_texts(["a red thing", "a green thing"])
    rng = np.random.default_rng(seed)
    background = np.stack([_unit(0.2 * (ta if i % 2 else tb) + rng.normal(size=len(ta)) / np.sqrt(len(ta))) for i in range(80)])
    r.add_embeddings(background, modality="image")
    return ta, tb


def test_or_ranks_by_the_nearer_term_not_the_mean(retriever: MultimodalRetriever) -> None:
    from mmgr_qdrant.setops import ConceptCutoff

    r = retriever
    ta, tb = _ranking_index(r)
    a, b, _mid = r.add_embeddings(np.stack([ta, tb, _unit(ta + tb)]), modality="image")
    r.build()
    r.cutoff = ConceptCutoff(beam_size=256, mass=None)  # every prefix: the ranking alone decides
    hits = r.search(Q.text("a red thing") | Q.text("a green thing"), k=3, modality="image", explain=True)
    assert {h.id for h in hits[:2]} == {a, b}  # the mean of the two terms would put `mid` first
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.explain["ranking_term"] for h in hits[:2]} == {0, 1}
    # AND reads the two texts as one phrase, which the encoder embeds
    both = r.compile(Q.text("a red thing") & Q.text("a green thing")).ranking_vectors
    phrase = r.encoder.encode_texts(["a red thing and a green thing"])[0]
    assert both is not None and both.shape[0] == 1 and np.allclose(both[0], phrase / np.linalg.norm(phrase), atol=1e-5)
    assert r.search(Q.text("a red thing") & Q.modality("image"), k=1)[0].id == a


def test_linked_documents_add_to_the_score(retriever: MultimodalRetriever) -> None:
    from mmgr_qdrant.setops import ConceptCutoff

    r = retriever
    ta, _ = _ranking_index(r)
    rng = np.random.default_rng(1)
    noise = _unit(rng.normal(size=len(ta)))
    close, far = r.add_embeddings(
        np.stack([_unit(ta + 0.3 * noise), _unit(ta + 0.5 * noise)]), modality="image", payloads=[{"tag": "a"}, {"tag": "b"}]
    )
    (caption,) = r.add_embeddings(ta[None, :], modality="text")
    r.build()
    r.cutoff = ConceptCutoff(beam_size=256, mass=None)
    query = Q.text("a red thing") & Q.modality("image")
    assert r.search(query, k=1)[0].id == close
    r.link(far, caption)
    hits = r.search(query, k=2, explain=True)
    assert [h.id for h in hits] == [far, close]
    top = hits[0].explain
    assert top["linked_id"] == caption and top["linked_score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0].score == pytest.approx(top["vector_score"] + top["linked_score"], abs=1e-5)
    assert all(h.modality == "image" for h in hits)  # the caption itself is not admitted
    # a document reached through its link must still pass the query's filter
    assert r.search(query, k=2, where={"tag": "a"})[0].id == close
    assert far not in {h.id for h in r.search(query & ~Q.where({"tag": "b"}), k=5)}


def test_a_negated_concept_uses_the_narrower_cutoff(index: Any) -> None:
    from mmgr_qdrant.setops import ConceptCutoff

    r, *_ = index
    gen = r.index.generative
    assert gen is not None
    r.negative_cutoff = ConceptCutoff(beam_size=64, mass=None, depth=3, max_fraction=0.02)
    try:
        compiled = r.compile(Q.modality("image") & Q.text("a red thing") & ~Q.text("a blue thing"))
    finally:
        from mmgr_qdrant.setops import DEFAULT_NEGATIVE_CUTOFF

        r.negative_cutoff = DEFAULT_NEGATIVE_CUTOFF
    atoms = {str(a.atom): a for a in compiled.atoms}
    neg = atoms['"a blue thing"'].resolution
    pos = atoms['"a red thing"'].resolution
    assert neg is not None and pos is not None and neg.prefixes
    for m in {p[0] for p in neg.prefixes}:  # the cut-off applies per modality (each decoded on its own)
        counts = [int(gen.prefix_counts(np.asarray([p]))[0]) for p in neg.prefixes if p[0] == m]
        assert len(counts) == 1 or sum(counts) <= 0.02 * len(gen.trie)
    assert all(len(p) == min(3, gen.n_levels) for p in neg.prefixes)
    assert all(len(p) == 2 for p in pos.prefixes)  # positives: the default cut-off (modality + one code)
