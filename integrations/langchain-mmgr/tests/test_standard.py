"""LangChain's own standard suite (``langchain-tests``) run against ``MMGRRetriever`` on a small built index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_mmgr import MMGRRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from mmgr_qdrant import MultimodalRetriever

# The suite's one async test carries no marker of its own (and may not be overridden): mark the
# class for pytest-asyncio, which then notes that the sync tests need no loop.
ASYNC_TESTS = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .*> is marked with '@pytest.mark.asyncio' but it is not an async function"),
]


@ASYNC_TESTS[0]
@ASYNC_TESTS[1]
class TestMMGRRetrieverStandard(RetrieversIntegrationTests):
    built: MultimodalRetriever

    @pytest.fixture(autouse=True)
    def _built_index(self, index: MultimodalRetriever) -> Iterator[None]:
        index.build(epochs=1)
        self.built = index
        yield

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return MMGRRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": self.built}

    @property
    def retriever_query_example(self) -> str:
        return "a red sports car"


def test_k_field_and_search_kwargs(index: MultimodalRetriever) -> None:
    assert len(MMGRRetriever(retriever=index, k=3).invoke("boat")) == 3
    assert len(MMGRRetriever(retriever=index, k=2, search_kwargs={"k": 2}).invoke("boat")) == 2
    assert len(MMGRRetriever(retriever=index, search_kwargs={"k": 4}).invoke("boat")) == 4  # search_kwargs still honoured
    assert len(MMGRRetriever(retriever=index, k=3).invoke("boat", k=1)) == 1  # per call wins
    with pytest.raises(ValueError, match="give the number of documents once"):
        MMGRRetriever(retriever=index, k=3, search_kwargs={"k": 5})
