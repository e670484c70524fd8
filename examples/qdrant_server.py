"""mmgr-qdrant on an existing Qdrant server (self-hosted, cluster or Qdrant Cloud).

Set ``QDRANT_URL`` (and ``QDRANT_API_KEY`` for Qdrant Cloud) to use your server::

    QDRANT_URL=http://localhost:6333 python examples/qdrant_server.py
    QDRANT_URL=https://xyz.cloud.qdrant.io QDRANT_API_KEY=... python examples/qdrant_server.py

Everything the index needs to reopen (config, and after ``build()`` the docid codebooks and the
decoder) is stored in the server itself, so a second machine that knows only the URL can
``MultimodalRetriever.open(name, url=...)`` it; the script shows that by opening it a second time.

Without ``QDRANT_URL`` the script falls back to ``QdrantClient(":memory:")``, qdrant-client's
in-process local mode, which speaks the same client API as a server: fine to try the code, but it
filters point by point in Python and keeps nothing, so use a real server (or the embedded
``path=`` store) for real data. The collection is deleted at the end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qdrant_client import QdrantClient

from mmgr_qdrant import MultimodalRetriever

TEXTS = [
    "A lighthouse on a rocky coast at dusk.",
    "Fresh bread and a glass of red wine on a wooden table.",
    "Two sailboats racing in strong wind.",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mmgr-qdrant on an existing Qdrant server.")
    parser.add_argument("--url", default=os.environ.get("QDRANT_URL"), help="server URL (default: $QDRANT_URL)")
    parser.add_argument("--collection", default="mmgr_example")
    parser.add_argument("--encoder", default=None, help="encoder name; default: the library default (lit:default)")
    parser.add_argument("--keep", action="store_true", help="keep the collection on the server")
    args = parser.parse_args(argv)

    if args.url:
        client = QdrantClient(url=args.url, api_key=os.environ.get("QDRANT_API_KEY"))
        print(f"using the Qdrant server at {args.url}")
    else:
        client = QdrantClient(":memory:")
        print("QDRANT_URL is not set: using QdrantClient(':memory:') (local mode, in this process, nothing kept).")

    options = {} if args.encoder is None else {"encoder": args.encoder}
    try:
        # exist_ok=True reopens the collection on a second run instead of failing.
        with MultimodalRetriever.create(args.collection, client=client, exist_ok=True, **options) as r:
            r.add_texts(TEXTS, payloads=[{"topic": t} for t in ("coast", "food", "sailing")])
            print(f"{r!r} holds {r.count()} documents")

        # Another process or machine would do this with url=...; the client here stands in for it.
        with MultimodalRetriever.open(args.collection, client=client) as again:
            for hit in again.search("boats at sea", k=2):
                print(f"  {hit.score:.3f}  {hit.text}  {hit.payload}")
            hits = again.search("boats at sea", k=3, where={"topic": "food"})
            print("  with where={'topic': 'food'}:", [h.text for h in hits])
    finally:
        if not args.keep and args.collection in MultimodalRetriever.list_collections(client=client):
            MultimodalRetriever.drop(args.collection, client=client)  # the collection and its saved artifacts
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
