"""The trie of existing docids, held as flat per-level arrays for vectorized beam search.

Nodes at depth t are the distinct length-t prefixes of the docids, numbered in lexicographic
order (depth 0 is the root alone). Because the numbering is lexicographic, the children of a
node are contiguous at the next depth, so each level is a CSR pair:

    ptr[t]:   (n_nodes[t] + 1,)  children of depth-t node i are depth-(t+1) nodes ptr[i]:ptr[i+1]
    child[t]: (n_nodes[t + 1],)  the level-t code of each depth-(t+1) node

A child's node id is ``ptr[i] + j``, so beam search moves down the trie with one gather and never
builds a dense (nodes x vocab) mask; a level with a large vocabulary (the tie-break) costs only
its largest fan-out. The deduplicated, sorted codes are the source of truth; ``add`` and
``remove`` edit them and the arrays are rebuilt lazily (about 0.1 s at 100,000 docids).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ArtifactError, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelTensors:
    """One trie level on a device, for moving hypotheses from depth t to depth t + 1.

    Attributes:
        start: (n_nodes[t],) first child (a depth-(t+1) node id) of each depth-t node.
        count: (n_nodes[t],) children of each depth-t node.
        child: (n_nodes[t+1] + pad,) level-t code of each depth-(t+1) node, zero-padded.
        offsets: (fan_out,) ``arange`` of the level's largest fan-out.
    """

    start: torch.Tensor
    count: torch.Tensor
    child: torch.Tensor
    offsets: torch.Tensor


def _as_codes(codes: np.ndarray | Iterable[Iterable[int]], n_levels: int | None) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.size == 0 and n_levels is not None:
        return np.zeros((0, n_levels), dtype=np.int64)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InputError(
            f"Docid codes must be a 2-D integer array (n, L), got shape {arr.shape} and dtype "
            f"{arr.dtype}; pass one row of integer codes per document."
        )
    if n_levels is not None and arr.shape[1] != n_levels:
        raise InputError(
            f"Docid codes have {arr.shape[1]} columns but the trie has {n_levels} levels; "
            "pass codes from the same docid scheme."
        )
    if arr.size and arr.min() < 0:
        raise InputError("Docid codes must be non-negative; got a negative code.")
    return arr.astype(np.int64, copy=False)


def _sort_unique(codes: np.ndarray) -> np.ndarray:
    """Rows sorted lexicographically, duplicates dropped."""
    if len(codes) == 0:
        return codes.copy()
    return _dedupe_sorted(codes[np.lexsort(codes.T[::-1])])


def _dedupe_sorted(codes: np.ndarray) -> np.ndarray:
    """Already sorted rows with adjacent duplicates dropped."""
    keep = np.ones(len(codes), dtype=bool)
    keep[1:] = np.any(codes[1:] != codes[:-1], axis=1)
    return np.ascontiguousarray(codes[keep])


def _order_keys(codes: np.ndarray) -> np.ndarray:
    """One scalar per row that sorts like the rows (lexicographically): big-endian bytes compare
    like the non-negative codes they encode, and numpy orders void scalars by their bytes."""
    codes = np.ascontiguousarray(codes, dtype=">i8")
    return codes.view(np.dtype((np.void, 8 * codes.shape[1]))).ravel()


def _row_keys(codes: np.ndarray) -> np.ndarray:
    """One opaque, comparable scalar per row (for set membership; not numeric order)."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    return codes.view(np.dtype((np.void, 8 * codes.shape[1]))).ravel()


class DocidTrie:
    """The set of docids that exist, as a prefix trie.

    Args:
        codes: (n, L) integer docids; duplicates are ignored.
        n_levels: L, needed only when ``codes`` is empty.

    Raises:
        InputError: the codes are not a 2-D non-negative integer array.
    """

    def __init__(
        self, codes: np.ndarray | Iterable[Iterable[int]] = (), *, n_levels: int | None = None
    ) -> None:
        raw = np.asarray(codes)
        if n_levels is None and raw.size == 0 and raw.ndim != 2:
            raise InputError("DocidTrie needs n_levels when it is built from no codes.")
        arr = _as_codes(raw, n_levels)
        self._codes = _sort_unique(arr)
        self._codes.setflags(write=False)
        self._levels: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._fanout: list[int] | None = None
        self._max_codes: np.ndarray | None = None
        self._tensors: dict[str, list[LevelTensors]] = {}
        self._np_levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None = None

    # ------------------------------------------------------------------ queries

    @property
    def n_levels(self) -> int:
        """Docid length L."""
        return int(self._codes.shape[1])

    @property
    def codes(self) -> np.ndarray:
        """(n, L) the distinct docids, sorted lexicographically (read-only)."""
        return self._codes

    def __len__(self) -> int:
        return int(self._codes.shape[0])

    def __repr__(self) -> str:
        return f"DocidTrie(n={len(self)}, levels={self.n_levels})"

    def num_nodes(self, depth: int) -> int:
        """Distinct prefixes of length ``depth`` (1 for depth 0 when the trie is not empty)."""
        self._check_depth(depth)
        if depth == 0:
            return 1 if len(self) else 0
        return len(self._arrays()[depth - 1][1])

    def prefixes(self, depth: int) -> np.ndarray:
        """(n_nodes, depth) the distinct prefixes of length ``depth``, sorted."""
        self._check_depth(depth)
        return _dedupe_sorted(self._codes[:, :depth]) if depth else np.zeros((1, 0), np.int64)  # sorted codes: sorted prefixes

    def csr(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Level ``level``'s ``(ptr, child)`` arrays (module docstring), built once and shared (read them only)."""
        return self._arrays()[level]

    def max_children(self, level: int) -> int:
        """The largest fan-out from depth ``level`` to depth ``level + 1``."""
        self._arrays()
        assert self._fanout is not None
        return self._fanout[level]

    def max_codes(self) -> np.ndarray:
        """(L,) the largest code of each level (-1 for an empty trie)."""
        if self._max_codes is None:
            empty = len(self) == 0
            self._max_codes = np.full(self.n_levels, -1, np.int64) if empty else self._codes.max(0)
        return self._max_codes

    def contains(self, prefixes: np.ndarray) -> np.ndarray:
        """(m,) whether each row of ``prefixes`` (m, depth) is a prefix of some docid."""
        prefixes = _as_codes(prefixes, None)
        depth = prefixes.shape[1]
        self._check_depth(depth)
        return np.isin(_row_keys(prefixes), _row_keys(self.prefixes(depth)))

    # ------------------------------------------------------------------ updates

    def copy(self) -> DocidTrie:
        """A trie with the same docids, sharing the read-only codes (no re-sort); writers copy,
        then add or remove, so readers of the original see no change."""
        other = object.__new__(DocidTrie)
        other._codes = self._codes
        other._levels, other._fanout, other._max_codes = self._levels, self._fanout, self._max_codes
        other._tensors = dict(self._tensors)
        other._np_levels = self._np_levels
        return other

    def _find(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For sorted unique ``rows``: their insertion positions in the codes, and which exist."""
        pos = np.searchsorted(_order_keys(self._codes), _order_keys(rows))
        inside = pos < len(self._codes)
        found = np.zeros(len(rows), dtype=bool)
        found[inside] = (self._codes[pos[inside]] == rows[inside]).all(1)
        return pos, found

    def add(self, codes: np.ndarray | Iterable[Iterable[int]]) -> int:
        """Insert docids; returns how many were new (a merge into the sorted codes, not a re-sort)."""
        arr = _sort_unique(_as_codes(codes, self.n_levels))
        if not len(arr):
            return 0
        pos, found = self._find(arr)
        new = arr[~found]
        if len(new):
            self._set_codes(np.ascontiguousarray(np.insert(self._codes, pos[~found], new, axis=0)))
        return len(new)

    def remove(self, codes: np.ndarray | Iterable[Iterable[int]]) -> int:
        """Delete docids (absent ones are ignored); returns how many were removed."""
        arr = _sort_unique(_as_codes(codes, self.n_levels))
        if not len(arr) or not len(self):
            return 0
        pos, found = self._find(arr)
        if found.any():
            self._set_codes(np.ascontiguousarray(np.delete(self._codes, pos[found], axis=0)))
        return int(found.sum())

    def _set_codes(self, codes: np.ndarray) -> None:
        codes.setflags(write=False)
        self._codes = codes
        self._levels = None
        self._fanout = None
        self._max_codes = None
        self._tensors = {}
        self._np_levels = None

    # ------------------------------------------------------------------ persistence

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The trie as named arrays (for ``np.savez``); the level arrays are derived on load."""
        return {"codes": np.array(self._codes)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DocidTrie:
        """Rebuild from :meth:`to_arrays` output.

        Raises:
            ArtifactError: the arrays are missing or malformed.
        """
        codes = arrays.get("codes") if hasattr(arrays, "get") else None
        if codes is None or np.ndim(codes) != 2:
            raise ArtifactError(
                "The saved docid trie has no 2-D 'codes' array; rebuild the index."
            )
        try:
            return cls(np.asarray(codes), n_levels=int(np.shape(codes)[1]))
        except InputError as exc:
            raise ArtifactError(f"The saved docid trie is malformed: {exc}") from exc

    # ------------------------------------------------------------------ level arrays

    def _check_depth(self, depth: int) -> None:
        if not 0 <= depth <= self.n_levels:
            raise InputError(
                f"A depth of {depth} is outside this trie's 0..{self.n_levels} levels."
            )

    def _arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        levels = self._levels
        if levels is None:
            levels = self._build()
            # fan-outs first: a concurrent reader that sees the levels must see their fan-outs too
            # (it read an unset fan-out list as "list index out of range" under a writer)
            self._fanout = [int(np.diff(p).max()) if len(p) > 1 else 0 for p, _ in levels]
            self._levels = levels
        return levels

    def _build(self) -> list[tuple[np.ndarray, np.ndarray]]:
        codes, (n, L) = self._codes, self._codes.shape
        levels: list[tuple[np.ndarray, np.ndarray]] = []
        # new[t][r]: row r starts a new depth-t node (rows are sorted, so nodes are runs)
        new = np.zeros(n, dtype=bool)
        if n:
            new[0] = True
        parent_id = np.zeros(n, dtype=np.int64)  # depth-0 node of every row: the root
        n_parent = 1 if n else 0
        for t in range(L):
            if n > 1:
                new[1:] |= codes[1:, t] != codes[:-1, t]
            node_id = np.cumsum(new) - 1  # depth-(t+1) node of every row
            first = np.flatnonzero(new)  # first row of each depth-(t+1) node
            counts = np.bincount(parent_id[first], minlength=n_parent)
            ptr = np.zeros(n_parent + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            levels.append((ptr, codes[first, t].copy()))
            parent_id, n_parent = node_id, len(first)
        return levels

    def level_arrays(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`level_tensors` as numpy arrays ``(start, count, child, offsets)`` per level (cached)."""
        if self._np_levels is None:
            self._np_levels = [
                (lv.start.numpy(), lv.count.numpy(), lv.child.numpy(), lv.offsets.numpy()) for lv in self.level_tensors("cpu")
            ]
        return self._np_levels

    def level_tensors(self, device: torch.device | str = "cpu") -> list[LevelTensors]:
        """Per-level CSR tensors on ``device`` for beam search (built once, then cached)."""
        key = str(torch.device(device))
        if key not in self._tensors:
            levels = []
            arrays = self._arrays()
            fanout = self._fanout or []
            for t, (ptr, child) in enumerate(arrays):
                fan = fanout[t]
                # a dead hypothesis may point past the last node: pad with childless nodes
                pad = np.zeros(fanout[t - 1] if t else 0, dtype=np.int64)
                # padding the child codes by the fan-out lets a gather run past the end unclamped
                padded = np.concatenate([child, np.zeros(max(fan, 1), dtype=np.int64)])
                levels.append(
                    LevelTensors(
                        start=torch.from_numpy(np.concatenate([ptr[:-1], pad])).to(key),
                        count=torch.from_numpy(np.concatenate([np.diff(ptr), pad])).to(key),
                        child=torch.from_numpy(padded).to(key),
                        offsets=torch.arange(fan, device=key),
                    )
                )
            self._tensors[key] = levels
        return self._tensors[key]
