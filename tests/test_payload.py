"""The library's payload fields (``mmgr_qdrant.payload``): the hit reader agrees with the full one."""

from __future__ import annotations

from typing import Any

import pytest

from mmgr_qdrant.payload import LibraryFields, docid_in, hit_fields, split

PAYLOADS: list[dict[str, Any]] = [
    {},
    {"color": "red", "n": 3},
    {"_mmgr": {"modality": "image", "uri": "/a.jpg", "caption": "a dog", "docids": {"3": [1, 12, 7, 0]}, "prefixes": ["3/1"]}},
    {"k": [1, 2], "_mmgr": {"modality": "text", "text": "hello", "caption": "not shown", "links": [7, "8", "9c1e7d5a-0f7e-4d0e-9a53-3c1d2b4e5f60"],
                            "docids": {"2": [0, 1, 2, 3], "3": [0, 4, 5, 6]}, "future": {"x": 1}}},
    {"_mmgr": {"modality": "video", "video": 42, "t": 12, "docids": {}}},
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("generation", [None, 2, 3, 4])
def test_hit_fields_equal_the_full_reader(payload: dict[str, Any], generation: int | None) -> None:
    user, meta = split(payload)
    f = hit_fields(payload, generation)
    assert f.user == user and f.modality == meta.modality and f.uri == meta.uri and f.text == meta.display_text
    assert f.links == meta.links and f.t == meta.t and f.video == meta.video
    assert f.docid == meta.docid(generation) == docid_in(payload.get("_mmgr") or {}, generation)
    assert LibraryFields.of(payload).docid(generation) == f.docid


def test_with_docid_tags_every_prefix_and_keeps_the_previous_generation() -> None:
    from mmgr_qdrant.payload import LibraryFields, tag

    f = LibraryFields.from_dict({"modality": "image"}).with_docid(3, [1, 12, 7, 0])
    assert list(f.prefixes) == [tag(3, [1, 12, 7, 0][:i]) for i in range(1, 5)] == ["3/1", "3/1.12", "3/1.12.7", "3/1.12.7.0"]
    g = f.with_docid(4, [2, 5])
    assert g.docids == {"4": [2, 5], "3": [1, 12, 7, 0]} and list(g.prefixes) == [*f.prefixes, "4/2", "4/2.5"]
    assert list(g.with_docid(6, [9]).prefixes) == ["6/9"]  # generations before the previous one are dropped
