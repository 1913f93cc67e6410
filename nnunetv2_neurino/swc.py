"""SWC neuron reconstructions: the one tree model used by every module of the package.

An SWC file has one node per row, columns ``n type x y z radius parent`` (parent ``-1`` = root).
Image-space SWCs hold 0-based voxel coordinates with x = the last array axis (``img[z, y, x]``).

:class:`SWCTree` stores the columns as numpy arrays (a forest: several roots are allowed);
:func:`read_swc` parses files leniently where the format is loose (comments, tabs, unsorted rows, any
ids, several roots, missing parents) and strictly where a file is broken (cycles, NaN, duplicate ids,
non-numeric fields -> :class:`~nnunetv2_neurino.errors.NeurinoError` naming file and line);
:func:`write_swc` writes an atomic, parent-before-child file with at most one soma node, which MorphIO
loads.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import depth_first_order

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_file

__all__ = ["SWCTree", "read_swc", "vaa3d_parent_index", "write_swc", "format_swc", "SOMA", "AXON",
           "BASAL_DENDRITE", "APICAL_DENDRITE", "UNDEFINED"]

UNDEFINED, SOMA, AXON, BASAL_DENDRITE, APICAL_DENDRITE = 0, 1, 2, 3, 4
_MAX_LISTED = 20


def _short_list(values) -> str:
    values = [int(v) for v in values]
    text = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return f"[{text}{', ...' if len(values) > _MAX_LISTED else ''}] ({len(values)} in all)"


@dataclass(eq=False)
class SWCTree:
    """A forest of neuron nodes, one row per node, SWC column semantics.

    Attributes
    ----------
    ids : int64 (N,) node ids, unique (any values, not necessarily sorted or contiguous).
    types : int64 (N,) SWC structure types (1 soma, 2 axon, 3 basal dendrite, 4 apical dendrite, ...).
    xyz : float64 (N, 3) positions, columns x, y, z (x = last array axis for image-space trees; voxels
        or micrometres, as the producer says).
    radius : float64 (N,) radii, same unit as ``xyz``.
    parent : int64 (N,) parent ids, -1 = root. An id that is not in ``ids`` is treated as a root by
        :attr:`parent_index` (:func:`read_swc` already turns such parents into -1).
    source : where the tree came from (a file name), used in messages.
    """

    ids: np.ndarray
    types: np.ndarray
    xyz: np.ndarray
    radius: np.ndarray
    parent: np.ndarray
    source: str = field(default="<memory>")

    def __post_init__(self) -> None:
        self.ids = np.array(self.ids, dtype=np.int64).reshape(-1)
        n = self.ids.shape[0]
        self.types = np.broadcast_to(np.asarray(self.types, dtype=np.int64), (n,)).copy()
        self.xyz = np.array(self.xyz, dtype=np.float64).reshape(-1, 3)
        self.radius = np.broadcast_to(np.asarray(self.radius, dtype=np.float64), (n,)).copy()
        self.parent = np.array(self.parent, dtype=np.int64).reshape(-1)
        if not (self.xyz.shape[0] == self.parent.shape[0] == n):
            raise ValueError(f"SWCTree columns differ in length: ids {n}, xyz {self.xyz.shape[0]}, "
                             f"parent {self.parent.shape[0]}")

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def empty(cls, source: str = "<memory>") -> SWCTree:
        """A tree with no nodes."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0),
                   np.zeros(0, np.int64), source)

    @classmethod
    def from_parent_index(cls, xyz: np.ndarray, parent_index: np.ndarray, radius=1.0, types=BASAL_DENDRITE,
                          first_id: int = 1, source: str = "<memory>") -> SWCTree:
        """Build a tree from positions and parent *indices* (-1 = root); ids become ``first_id + index``.

        Parameters
        ----------
        xyz : (N, 3) positions, columns x, y, z.
        parent_index : (N,) index of each node's parent row, -1 for roots.
        radius, types : scalars or (N,) arrays.
        """
        parent_index = np.asarray(parent_index, dtype=np.int64).reshape(-1)
        ids = np.arange(parent_index.shape[0], dtype=np.int64) + first_id
        parent = np.where(parent_index >= 0, parent_index + first_id, -1)
        return cls(ids, types, xyz, radius, parent, source)

    @classmethod
    def from_zyx(cls, zyx: np.ndarray, parent_index: np.ndarray, radius=1.0, types=BASAL_DENDRITE,
                 first_id: int = 1, source: str = "<memory>") -> SWCTree:
        """Like :meth:`from_parent_index` with positions given in array order (N, 3) = (z, y, x)."""
        zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
        return cls.from_parent_index(zyx[:, ::-1], parent_index, radius, types, first_id, source)

    @classmethod
    def concatenate(cls, trees: list[SWCTree], source: str = "<memory>") -> SWCTree:
        """Join several trees into one forest; ids are renumbered 1..N (tree order, then row order)."""
        parts, offset = [], 0
        for t in trees:
            pidx = t.parent_index
            parts.append((t, np.where(pidx >= 0, pidx + offset, -1)))
            offset += t.n
        if not parts:
            return cls.empty(source)
        return cls.from_parent_index(
            np.concatenate([t.xyz for t, _ in parts]), np.concatenate([p for _, p in parts]),
            radius=np.concatenate([t.radius for t, _ in parts]),
            types=np.concatenate([t.types for t, _ in parts]), source=source)

    def copy(self) -> SWCTree:
        return SWCTree(self.ids.copy(), self.types.copy(), self.xyz.copy(), self.radius.copy(),
                       self.parent.copy(), self.source)

    # ---------------------------------------------------------------------------------------- queries
    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.ids.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def parent_index(self) -> np.ndarray:
        """int64 (N,): row index of each node's parent, -1 for roots (and for parent ids not in ``ids``)."""
        if self.n == 0:
            return np.zeros(0, np.int64)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, self.parent), 0, self.n - 1)
        found = (sorted_ids[pos] == self.parent) & (self.parent != -1)
        return np.where(found, order[pos], -1).astype(np.int64)

    @property
    def roots(self) -> np.ndarray:
        """int64 indices of the root rows (parent -1 or absent)."""
        return np.flatnonzero(self.parent_index < 0)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Parent-child segments as row indices ``(child_idx, parent_idx)``, each (E,), E = N - #roots."""
        pidx = self.parent_index
        child = np.flatnonzero(pidx >= 0)
        return child, pidx[child]

    def to_zyx(self) -> np.ndarray:
        """float64 (N, 3) positions in array order (z, y, x)."""
        return self.xyz[:, ::-1].copy()

    def children_counts(self) -> np.ndarray:
        """int64 (N,): number of children of each node (0 = tip, >= 2 = branch point)."""
        _, parent = self.edges()
        return np.bincount(parent, minlength=self.n).astype(np.int64)

    def segment_lengths(self) -> np.ndarray:
        """float64 (E,): Euclidean length of every parent-child segment, in the order of :meth:`edges`."""
        child, parent = self.edges()
        return np.linalg.norm(self.xyz[child] - self.xyz[parent], axis=1)

    def cable_length(self) -> float:
        """Total length of all parent-child segments (unit of ``xyz``)."""
        return float(self.segment_lengths().sum())

    def component_labels(self) -> np.ndarray:
        """int64 (N,): index (into :attr:`roots`) of the tree each node belongs to. Requires no cycles."""
        anc = self._root_of()
        roots = self.roots
        return np.searchsorted(roots, anc).astype(np.int64)

    # ------------------------------------------------------------------------------------- validation
    def _ancestor_after_jumps(self) -> np.ndarray:
        """Pointer doubling: each node's 2^k-th ancestor, k = ceil(log2 N) + 1 (-1 once past a root).

        A node in a proper tree ends at -1; a node on or below a cycle ends on the cycle.
        """
        anc = self.parent_index
        for _ in range(max(1, math.ceil(math.log2(max(self.n, 2)))) + 1):
            anc = np.where(anc >= 0, anc[np.maximum(anc, 0)], -1)
        return anc

    def _root_of(self) -> np.ndarray:
        """int64 (N,): row index of each node's root (pointer doubling). Requires no cycles."""
        pidx = self.parent_index
        top = np.where(pidx >= 0, pidx, np.arange(self.n))
        for _ in range(max(1, math.ceil(math.log2(max(self.n, 2)))) + 1):
            top = top[top]
        return top

    def find_cycle_node(self) -> int | None:
        """Row index of one node that lies on a parent cycle, or None when the parent links form a forest."""
        if self.n == 0:
            return None
        anc = self._ancestor_after_jumps()
        stuck = np.flatnonzero(anc >= 0)
        return None if stuck.size == 0 else int(anc[stuck[0]])

    def validate(self, lines: np.ndarray | None = None) -> None:
        """Raise :class:`NeurinoError` for duplicate ids, non-finite numbers or parent cycles.

        Parameters
        ----------
        lines : optional (N,) 1-based file line numbers of the rows, for messages.
        """
        def where(i: int) -> str:
            return f"{self.source}:{int(lines[i])}" if lines is not None else f"{self.source} (row {i})"

        order = np.argsort(self.ids, kind="stable")
        dup = np.flatnonzero(np.diff(self.ids[order]) == 0)
        if dup.size:
            a, b = order[dup[0]], order[dup[0] + 1]
            raise NeurinoError(f"{where(b)}: duplicate node id {int(self.ids[b])} (first defined at "
                               f"{where(a)})")
        bad = ~np.isfinite(self.xyz).all(axis=1) | ~np.isfinite(self.radius)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NeurinoError(f"{where(i)}: node {int(self.ids[i])} has a non-finite coordinate or radius")
        c = self.find_cycle_node()
        if c is not None:
            raise NeurinoError(f"{where(c)}: node {int(self.ids[c])} lies on a parent cycle "
                               f"(following parents from it returns to it)")

    # ------------------------------------------------------------------------------------ re-ordering
    def topological_order(self) -> np.ndarray:
        """int64 (N,) row order, depth-first from each root, parents before children. Requires no cycles.

        Roots are visited in row order; children in row order.
        """
        n = self.n
        if n == 0:
            return np.zeros(0, np.int64)
        pidx = self.parent_index
        src = np.where(pidx >= 0, pidx, n)            # virtual super-root n above all roots
        dst = np.arange(n)
        g = sp.csr_matrix((np.ones(n), (src, dst)), shape=(n + 1, n + 1))
        g.sort_indices()
        order = depth_first_order(g, n, directed=True, return_predecessors=False)
        order = order[order != n]
        if order.shape[0] != n:
            raise NeurinoError(f"{self.source}: the parent links contain a cycle")
        return order.astype(np.int64)

    def take(self, index: np.ndarray) -> SWCTree:
        """Rows ``index`` (int indices or a bool mask), ids kept; parents not kept become roots (-1)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        kept = np.zeros(self.n, bool)
        kept[index] = True
        pidx = self.parent_index
        parent = np.where((pidx >= 0) & kept[np.maximum(pidx, 0)], self.parent, -1)
        return SWCTree(self.ids[index], self.types[index], self.xyz[index], self.radius[index],
                       parent[index], self.source)

    def sorted(self) -> SWCTree:
        """The same tree with rows in :meth:`topological_order` (ids kept)."""
        return self.take(self.topological_order())

    def renumbered(self, first_id: int = 1) -> SWCTree:
        """The same rows with ids ``first_id, first_id + 1, ...`` in row order."""
        return SWCTree.from_parent_index(self.xyz, self.parent_index, self.radius, self.types, first_id,
                                         self.source)

    def rerooted(self, index: int) -> SWCTree:
        """The same segments with the tree containing row ``index`` re-rooted at that row.

        The parent links on the path from ``index`` to its old root are reversed; other trees of the
        forest are unchanged. Rows and ids keep their order.
        """
        pidx = self.parent_index.copy()
        path = [int(index)]
        while pidx[path[-1]] >= 0:
            path.append(int(pidx[path[-1]]))
        path = np.asarray(path)
        pidx[path[1:]] = path[:-1]
        pidx[path[0]] = -1
        parent = np.where(pidx >= 0, self.ids[np.maximum(pidx, 0)], -1)
        return SWCTree(self.ids, self.types, self.xyz, self.radius, parent, self.source)


# ------------------------------------------------------------------------------------------- reading
def _is_inline_text(src: str) -> bool:
    if "\n" in src:
        return True
    return not os.path.exists(src) and len(src.split()) >= 7


def _load_text(path_or_text) -> tuple[str, str]:
    """(text, display name) from a path, SWC text or a readable object."""
    if hasattr(path_or_text, "read"):
        text = path_or_text.read()
        return (text.decode() if isinstance(text, bytes) else text), getattr(path_or_text, "name", "<stream>")
    if isinstance(path_or_text, str) and _is_inline_text(path_or_text):
        return path_or_text, "<text>"
    path = Path(path_or_text)
    if not path.is_file():
        raise NeurinoError(f"SWC file not found: {path}")
    try:
        return path.read_text(encoding="utf-8", errors="replace"), str(path)
    except OSError as e:
        raise NeurinoError(f"cannot read SWC file {path}: {e}") from e


#: Largest |coordinate| or radius accepted (in the file's units, µm or voxels): far beyond any brain, and
#: small enough that distances, squared distances and sample counts stay exact in float64/int64.
MAX_COORDINATE = 1e9
_INT64_RANGE = (-(2 ** 63), 2 ** 63 - 1)


def _as_int(token: str, name: str, column: str) -> int:
    try:
        value = int(token)
    except ValueError:
        try:
            f = float(token)
        except ValueError:
            raise NeurinoError(f"{name}: column '{column}' is not a number: {token!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise NeurinoError(f"{name}: column '{column}' must be an integer, got {token!r}") from None
        value = int(f)
    if not _INT64_RANGE[0] <= value <= _INT64_RANGE[1]:
        raise NeurinoError(f"{name}: column '{column}' = {token} does not fit a 64-bit integer")
    return value


def _as_float(token: str, name: str, column: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise NeurinoError(f"{name}: column '{column}' is not a number: {token!r}") from None
    if not math.isfinite(value):
        raise NeurinoError(f"{name}: column '{column}' is not finite: {token!r}")
    if abs(value) > MAX_COORDINATE:
        raise NeurinoError(f"{name}: column '{column}' = {token} is beyond ±{MAX_COORDINATE:g}, the largest "
                           "coordinate or radius accepted")
    return value


def read_swc(path_or_text, missing_parent: Literal["root", "first_row"] = "root") -> SWCTree:
    """Read an SWC file (or SWC text) into an :class:`SWCTree`.

    Accepts ``#`` comments (whole-line or trailing), blank lines, tabs / repeated spaces, unsorted rows,
    any integer ids (from 0, or large), several roots, and extra columns after the seventh (ignored).
    Integer columns may be written as integral floats (``3.0``).

    Parameters
    ----------
    path_or_text : a file path, SWC text (anything containing a newline), or an open text/binary file.
    missing_parent : what to do with a node whose parent id is not in the file.
        ``"root"`` (default): the node becomes a root (parent -1), with a warning naming file and ids.
        ``"first_row"``: link it to the node of the file's first data row, as Vaa3D does, as far as a
        tree allows: a link that would close a cycle (the first row itself, or the root of the first
        row's own tree) is not made and that node stays a root (:func:`vaa3d_parent_index` gives
        Vaa3D's exact links, loops included, for ``swc-distance --vaa3d-compat``).
        Both modes warn.

    Returns
    -------
    SWCTree with rows in file order, ``source`` = the file name.

    Raises
    ------
    NeurinoError : missing file, fewer than 7 columns, non-numeric or non-finite fields, duplicate ids,
        parent cycles (all naming the file and line).
    """
    if missing_parent not in ("root", "first_row"):
        raise ValueError(f"missing_parent must be 'root' or 'first_row', got {missing_parent!r}")
    text, name = _load_text(path_or_text)
    return _read_text(text, name, missing_parent)[0]


def _read_text(text: str, name: str, missing_parent: str) -> tuple[SWCTree, np.ndarray]:
    """:func:`read_swc` of loaded text, and the rows whose parent id is missing from the file.

    Warnings point at the caller of the public function."""
    tree, line_arr = _parse(text, name)
    if tree.n == 0:
        return tree, np.zeros(0, np.int64)
    missing = _missing_parent_rows(tree, line_arr)
    if missing.size:
        missing_ids, missing_parents = tree.ids[missing].copy(), tree.parent[missing].copy()
        if missing_parent == "root":
            tree.parent[missing] = -1
            action = "they become roots"
        elif missing_parent == "vaa3d":              # vaa3d_parent_index: roots in the tree, row 0 there
            tree.parent[missing] = -1
            action = (f"Vaa3D's parent lookup hangs them from the first row's node {int(tree.ids[0])} "
                      "(loops included)")
        else:
            tree.parent[missing] = -1
            first_root = int(tree._root_of()[0]) if tree.find_cycle_node() is None else 0
            link = missing[(missing != 0) & (missing != first_root)]
            tree.parent[link] = tree.ids[0]
            action = (f"linked to the first row's node {int(tree.ids[0])} (Vaa3D behaviour)"
                      + ("" if link.size == missing.size else
                         f"; {missing.size - link.size} stay root(s) to avoid a cycle"))
        warnings.warn(f"{name}: {missing.size} node(s) have a parent id missing from the file: node ids "
                      f"{_short_list(missing_ids)}, missing parent ids {_short_list(missing_parents)}; "
                      f"{action}", stacklevel=4)
    tree.validate(line_arr)
    return tree, missing


def _missing_parent_rows(tree: SWCTree, line_arr: np.ndarray) -> np.ndarray:
    """Rows whose parent id (not -1) is absent from the file; duplicate ids raise first."""
    order = np.argsort(tree.ids, kind="stable")
    if np.any(np.diff(tree.ids[order]) == 0):
        tree.validate(line_arr)
    return np.flatnonzero((tree.parent != -1) & (tree.parent_index < 0))


def vaa3d_parent_index(path_or_text) -> tuple[SWCTree, np.ndarray]:
    """Read an SWC file and give the parent row of every node as Vaa3D's ``neuron_distance`` uses it.

    Vaa3D looks parent ids up in a hash whose default is row 0, so a node whose parent id is missing
    from the file hangs from the file's first row, even where that closes a loop (the first row itself
    gives a zero-length segment, sampled once). Only parents < 0 mark roots.

    Parameters
    ----------
    path_or_text : as for :func:`read_swc`.

    Returns
    -------
    tree : :func:`read_swc` of the file (missing parents -> roots; errors as there); a warning names
        the nodes whose parent is missing.
    parent_index : int64 (N,) Vaa3D's parent row of each node, -1 for roots; not necessarily a forest.
    """
    text, name = _load_text(path_or_text)
    tree, missing = _read_text(text, name, "vaa3d")
    pidx = tree.parent_index.copy()       # file parents, except missing ones (-1 here)
    pidx[missing] = 0
    return tree, pidx


def _parse(text: str, name: str) -> tuple[SWCTree, np.ndarray]:
    """Rows of SWC text as a tree with the file's parent ids, and 1-based line numbers.

    Raises NeurinoError for malformed rows (naming file and line); no tree checks. A UTF-8 byte order mark
    at the start is dropped; negative node ids and parent ids below -1 are refused, since ``parent < 0``
    means "root" and would silently cut the edge to a node with a negative id.
    """
    text = text.removeprefix("\ufeff")
    rows, lines = [], []
    for lineno, raw in enumerate(io.StringIO(text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tok = line.replace(",", " ").split()
        where = f"{name}:{lineno}"
        if len(tok) < 7:
            raise NeurinoError(f"{where}: expected 7 columns 'n type x y z radius parent', got {len(tok)}: "
                               f"{line!r}")
        rows.append((_as_int(tok[0], where, "n"), _as_int(tok[1], where, "type"),
                     _as_float(tok[2], where, "x"), _as_float(tok[3], where, "y"),
                     _as_float(tok[4], where, "z"), _as_float(tok[5], where, "radius"),
                     _as_int(tok[6], where, "parent")))
        if rows[-1][0] < 0 or rows[-1][6] < -1:
            raise NeurinoError(f"{where}: negative {'node' if rows[-1][0] < 0 else 'parent'} id "
                               f"{rows[-1][0] if rows[-1][0] < 0 else rows[-1][6]}: ids must be >= 0 and a "
                               "root's parent -1")
        lines.append(lineno)
    if not rows:
        return SWCTree.empty(name), np.zeros(0, np.int64)
    ids, types, x, y, z, r, parent = (np.asarray(c) for c in zip(*rows))
    return SWCTree(ids, types, np.stack([x, y, z], axis=1), r, parent, name), np.asarray(lines)


# ------------------------------------------------------------------------------------------- writing
def _fmt(values: np.ndarray) -> list[str]:
    return [np.format_float_positional(v, precision=6, trim="-") for v in values]


def _one_soma(tree: SWCTree, name: str) -> SWCTree:
    """At most one type-1 node, and it is a root (MorphIO's rules). Extra somata become type 3."""
    soma = np.flatnonzero(tree.types == SOMA)
    if soma.size == 0:
        return tree
    tree = tree.copy()
    roots = set(tree.roots.tolist())
    keep = next((int(i) for i in soma if int(i) in roots), int(soma[0]))
    extra = soma[soma != keep]
    if extra.size:
        warnings.warn(f"{name}: {extra.size} extra soma (type 1) node(s) written as type 3 (a file holds "
                      f"at most one soma node): ids {_short_list(tree.ids[extra])}", stacklevel=3)
        tree.types[extra] = BASAL_DENDRITE
    if keep not in roots:
        tree = tree.rerooted(keep)
    return tree


def format_swc(tree: SWCTree, header: str | None = None, sort: bool = True) -> str:
    """SWC text of ``tree`` (see :func:`write_swc`)."""
    tree.validate()
    tree = _one_soma(tree, tree.source)
    if sort:
        tree = tree.sorted()
    out = []
    if header:
        out += [f"# {h}" for h in header.splitlines()]
    out.append("# n type x y z radius parent")
    cols = [_fmt(tree.xyz[:, 0]), _fmt(tree.xyz[:, 1]), _fmt(tree.xyz[:, 2]), _fmt(tree.radius)]
    for i in range(tree.n):
        out.append(f"{tree.ids[i]} {tree.types[i]} {cols[0][i]} {cols[1][i]} {cols[2][i]} {cols[3][i]} "
                   f"{tree.parent[i]}")
    return "\n".join(out) + "\n"


def write_swc(tree: SWCTree, path: str | os.PathLike, force: bool = True, header: str | None = None,
              sort: bool = True) -> Path:
    """Write ``tree`` to ``path`` atomically (nothing half-written).

    The file holds at most one soma (type 1) node: when the tree has several, the first root soma
    (else the first soma row) is kept and the others are written as type 3 with a warning; a kept soma
    that is not a root becomes the root of its tree (parent links on the way reversed, same segments).
    With ``sort`` (default) rows are written depth-first, parents before children, ids unchanged.
    Coordinates keep 6 decimals.

    Parameters
    ----------
    tree : the tree (validated first: duplicate ids / cycles / NaN raise NeurinoError).
    path : output file.
    force : when False, refuse to replace an existing file.
    header : optional comment text written at the top (each line prefixed with ``#``).
    """
    text = format_swc(tree, header=header, sort=sort)
    path = Path(path)
    with atomic_file(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
