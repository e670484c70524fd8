"""What the compiler asks of the retriever (:class:`Resolver`, :class:`AtomResolution`) and what it reports per atom."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import InputError
from ..filters import Condition
from ..types import PointId
from .expr import All, Expr, FieldEq, FieldRange, Ids, Image, Modality, Prefix, Text


@dataclass(frozen=True, eq=False)
class AtomResolution:
    """What the retriever resolved a concept atom to.

    Attributes:
        vector: the atom's embedding, shape ``(dim,)``.
        prefixes: the docid prefixes the concept matches (after its :class:`ConceptCutoff`).
        scores: one figure per prefix (probability or log-probability), shown by ``explain``.
    """

    vector: np.ndarray
    prefixes: tuple[tuple[int, ...], ...]
    scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", np.asarray(self.vector, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "prefixes", tuple(tuple(int(c) for c in p) for p in self.prefixes))
        object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))
        if self.scores and len(self.scores) != len(self.prefixes):
            raise InputError(
                f"AtomResolution got {len(self.prefixes)} prefixes but {len(self.scores)} scores; give one score per prefix."
            )


class Resolver(Protocol):
    """What :func:`compile_expr` needs from the retriever."""

    def resolve_text(self, text: str, *, negated: bool = False) -> AtomResolution:
        """Embed ``text`` and decode the docid prefixes it matches (``negated``: it appears only under NOT)."""
        ...

    def resolve_image(self, image: Any, *, negated: bool = False) -> AtomResolution:
        """Embed an image (path, PIL, bytes, array) and decode its prefixes; InputError if unreadable."""
        ...

    def check_ids(self, ids: Sequence[PointId]) -> None:
        """Raise NotFoundError naming the ids that are not in the index."""
        ...

    def embed_text(self, text: str) -> np.ndarray:
        """Embed a phrase made of several text atoms (``"cat and dog"``), for ranking only."""
        ...


Polarity = Literal["positive", "negative", "both"]


@dataclass(frozen=True, eq=False)
class CompiledAtom:
    """One distinct atom of a compiled expression, for ``explain``.

    Attributes:
        atom: the atom.
        polarity: ``"positive"`` if it appears under an even number of NOTs, ``"negative"`` if
            under an odd number, ``"both"`` if it appears both ways.
        condition: the filter condition it compiled to (``None`` for ``*`` or an empty concept).
        resolution: the resolver's answer, for text and image atoms.
    """

    atom: Expr
    polarity: Polarity
    condition: Condition | None
    resolution: AtomResolution | None = None

    @property
    def kind(self) -> str:
        return {Text: "text", Image: "image", Ids: "ids", Prefix: "prefix", Modality: "modality",
                FieldEq: "field", FieldRange: "field", All: "all"}[type(self.atom)]
