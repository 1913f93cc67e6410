"""NeuroFly (Zenodo 13328867): image blocks with skeleton-mask or SQLite-graph labels.

Layout read (the real download is not yet checked against this; see the README):

* image blocks anywhere under SRC: TIFF, ``.zarr`` folders or zipped ``.zarr.zip`` (IMS/HDF5 blocks are
  logged as skipped: convert them to TIFF first);
* the label of block ``DIR/NAME.EXT`` is looked up in ``DIR`` and in sibling folders named ``labels``,
  ``masks``, ``skeletons`` or ``skels`` (of ``DIR`` or of its parent):

  - a SQLite graph ``NAME.db`` / ``NAME.sqlite`` / ``NAME.sqlite3`` with tables ``nodes(nid, coord, …)``
    and ``edges(src, des, …)``, converted to SWC (one tree per connected component, cycles broken by
    a breadth-first spanning tree rooted at the lowest-id end node). ``coord`` holds the 0-based voxel
    position **x, y, z** of the node *inside the block* (x = last array axis), stored as text
    (``"x,y,z"``, ``"[x, y, z]"`` or space-separated) or as a blob of three little-endian float64
    (24 bytes) or float32 (12 bytes) numbers; separate ``x``, ``y``, ``z`` columns also work. An optional
    ``radius`` column gives radii in voxels (default 1). The mask is rendered from the SWC.
  - a 1-voxel centre-line skeleton mask ``NAME_skel``/``NAME_skeleton``/``NAME_mask``/``NAME_label`` (or
    ``NAME`` inside a labels folder) in any image format, dilated to tubes of ``skeleton_radius`` voxels
    (of the finest axis; anisotropic spacing respected). No SWC is written for such cases.
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.nnunet_raw import CaseSource, LoadedCase, Skipped, unique_case_names
from nnunetv2_neurino.data.readers import image_stem, read_image
from nnunetv2_neurino.dataset_conversion.common import list_images, relative_name, require_folder
from nnunetv2_neurino.errors import NeurinoError

DEFAULT_NAME = "NeuroFly"
DESCRIPTION = "NeuroFly image blocks with skeleton or graph labels"

LABEL_FOLDERS = ("labels", "masks", "skeletons", "skels", "label", "mask")
LABEL_TAGS = ("_skel", "_skeleton", "_mask", "_label", "_labels")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
UNSUPPORTED_SUFFIXES = (".ims", ".h5", ".hdf5")


def _is_label_file(path: Path, root: Path) -> bool:
    if any(part.lower() in LABEL_FOLDERS for part in path.relative_to(root).parts[:-1]):
        return True
    return any(image_stem(path).lower().endswith(tag) for tag in LABEL_TAGS)


def _label_dirs(folder: Path) -> list[Path]:
    dirs = [folder] + [folder / n for n in LABEL_FOLDERS] + [folder.parent / n for n in LABEL_FOLDERS]
    return [d for d in dirs if d.is_dir()]


def find_label(image: Path, root: Path) -> Path | None:
    """The SQLite graph or skeleton mask belonging to ``image`` (graph first), or None."""
    stem = image_stem(image)
    dirs = _label_dirs(image.parent)
    for d in dirs:
        for suffix in SQLITE_SUFFIXES:
            if (d / f"{stem}{suffix}").is_file():
                return d / f"{stem}{suffix}"
    for d in dirs:
        for candidate in list_images(d):
            cstem = image_stem(candidate)
            if candidate == image:
                continue
            if cstem.lower() in {f"{stem}{tag}".lower() for tag in LABEL_TAGS} or (
                    d != image.parent and cstem == stem):
                return candidate
    return None


# ------------------------------------------------------------------------------------------- SQLite
def _parse_coord(value, db: Path, nid) -> tuple[float, float, float]:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) == 24:
            return struct.unpack("<3d", raw)
        if len(raw) == 12:
            return struct.unpack("<3f", raw)
        raise NeurinoError(f"{db}: node {nid}: coord blob of {len(raw)} bytes (expected 24 or 12)")
    numbers = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", str(value))
    if len(numbers) != 3:
        raise NeurinoError(f"{db}: node {nid}: coord {value!r} is not three numbers x, y, z")
    return tuple(float(n) for n in numbers)


def read_graph_db(db: str | os.PathLike):
    """Read a NeuroFly-style SQLite graph into an :class:`SWCTree` (voxel x, y, z; one tree per component)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from nnunetv2_neurino.swc import SWCTree
    from nnunetv2_neurino.tracing.skeleton_graph import orient_forest

    db = Path(db)
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for t in ("nodes", "edges"):
                if t not in tables:
                    raise NeurinoError(f"{db}: SQLite graph needs a table '{t}' (has {sorted(tables)})")
            ncols = [r[1] for r in con.execute("PRAGMA table_info(nodes)")]
            ecols = [r[1] for r in con.execute("PRAGMA table_info(edges)")]
            if "nid" not in ncols or not ("coord" in ncols or {"x", "y", "z"} <= set(ncols)):
                raise NeurinoError(f"{db}: table nodes needs 'nid' and 'coord' (or x, y, z); has {ncols}")
            if not {"src", "des"} <= set(ecols):
                raise NeurinoError(f"{db}: table edges needs 'src' and 'des'; has {ecols}")
            pos_cols = "coord" if "coord" in ncols else "x, y, z"
            rad_col = ", radius" if "radius" in ncols else ""
            rows = con.execute(f"SELECT nid, {pos_cols}{rad_col} FROM nodes ORDER BY nid").fetchall()
            edges = con.execute("SELECT src, des FROM edges").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise NeurinoError(f"{db}: cannot read SQLite graph ({e})") from None
    if not rows:
        raise NeurinoError(f"{db}: table nodes is empty")
    nids = np.array([r[0] for r in rows], dtype=np.int64)
    if len(np.unique(nids)) != len(nids):
        raise NeurinoError(f"{db}: duplicate nid values in table nodes")
    if pos_cols == "coord":
        xyz = np.array([_parse_coord(r[1], db, r[0]) for r in rows], dtype=np.float64)
        radius = np.array([r[2] if rad_col and r[2] is not None else 1.0 for r in rows], dtype=np.float64)
    else:
        xyz = np.array([r[1:4] for r in rows], dtype=np.float64)
        radius = np.array([r[4] if rad_col and r[4] is not None else 1.0 for r in rows], dtype=np.float64)
    n = len(nids)
    e = np.array(edges, dtype=np.int64).reshape(-1, 2)
    src = np.searchsorted(nids, e[:, 0]).clip(0, n - 1)
    des = np.searchsorted(nids, e[:, 1]).clip(0, n - 1)
    known = (nids[src] == e[:, 0]) & (nids[des] == e[:, 1]) & (src != des)
    if not np.all(known[(e[:, 0] != e[:, 1])]):
        bad = e[~known & (e[:, 0] != e[:, 1])][0]
        raise NeurinoError(f"{db}: edge {tuple(int(v) for v in bad)} refers to a nid missing from nodes")
    src, des = src[known], des[known]
    adj = coo_matrix((np.ones(len(src)), (src, des)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.int8)
    n_comp, comp = connected_components(adj, directed=False)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    # root of each component: its lowest-nid end node (degree <= 1), else its lowest-nid node
    priority = np.where(degree <= 1, 0, 1) * (n + 1) + np.arange(n)
    roots = np.full(n_comp, -1)
    order = np.lexsort((priority, comp))
    first = np.r_[True, comp[order][1:] != comp[order][:-1]]
    roots[comp[order][first]] = order[first]
    parent, _ = orient_forest(adj, roots)  # breadth-first: also breaks the graph's cycles
    return SWCTree.from_parent_index(xyz, parent, radius=radius, source=str(db))


def graph_case(name: str, image_path: Path, db: Path, radius_floor: float, radius_scale: float,
               channel: int = 0) -> CaseSource:
    def load() -> LoadedCase:
        from nnunetv2_neurino.data.render import render_swc

        image, spacing = read_image(image_path, channel=channel)
        tree = read_graph_db(db)
        label = render_swc(tree, image.shape, spacing=spacing, radius_floor=radius_floor,
                           radius_scale=radius_scale)
        return LoadedCase(image, spacing, label, tree)

    return CaseSource(name, load, f"{image_path} + {db.name}")


# ------------------------------------------------------------------------------------- skeleton masks
def skeleton_to_tubes(skeleton: np.ndarray, radius: float, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Dilate a centre-line mask to tubes.

    Parameters
    ----------
    skeleton : (z, y, x) mask, nonzero on the centre line.
    radius : tube radius in voxels of the finest axis (``min(spacing)``).
    spacing : (z, y, x) voxel size; distances are physical, so coarse axes get fewer voxels.

    Returns
    -------
    bool (z, y, x): voxels whose centre is within ``radius`` of a skeleton voxel centre.
    """
    import edt

    skeleton = np.asarray(skeleton) != 0
    if not skeleton.any():
        return skeleton.copy()
    dist = edt.edt(np.ascontiguousarray(~skeleton, dtype=np.uint8),
                   anisotropy=tuple(float(s) for s in spacing))
    return dist <= radius * float(min(spacing)) + 1e-6


def skeleton_case(name: str, image_path: Path, mask_path: Path, skeleton_radius: float,
                  channel: int = 0) -> CaseSource:
    def load() -> LoadedCase:
        image, spacing = read_image(image_path, channel=channel)
        skeleton, _ = read_image(mask_path)
        if skeleton.shape != image.shape:
            raise NeurinoError(f"{mask_path}: skeleton shape {skeleton.shape} != image shape {image.shape}")
        if not np.any(skeleton):
            raise NeurinoError(f"{mask_path}: skeleton mask is empty")
        label = skeleton_to_tubes(skeleton, skeleton_radius, spacing)
        return LoadedCase(image, spacing, label, None, ["no SWC: label is a skeleton mask"])

    return CaseSource(name, load, f"{image_path} + {mask_path.name}")


def find_cases(src: str | os.PathLike, radius_floor: float = 1.0, radius_scale: float = 1.0,
               skeleton_radius: float = 1.0, channel: int = 0) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of a NeuroFly folder (see the module docstring for the layout)."""
    src = require_folder(src)
    images = [p for p in list_images(src, recursive=True) if not _is_label_file(p, src)]
    skipped = [Skipped(p.name, "IMS/HDF5 blocks are not supported (convert to TIFF or zarr)", str(p))
               for p in sorted(src.rglob("*")) if p.suffix.lower() in UNSUPPORTED_SUFFIXES]
    found = []
    for img in images:
        label = find_label(img, src)
        if label is None:
            skipped.append(Skipped(relative_name(img, src), "no label (SQLite graph or skeleton mask) found",
                                   str(img)))
        else:
            found.append((img, label))
    names = unique_case_names([relative_name(img, src) for img, _ in found])
    cases = []
    for name, (img, label) in zip(names, found):
        if label.suffix.lower() in SQLITE_SUFFIXES:
            cases.append(graph_case(name, img, label, radius_floor, radius_scale, channel))
        else:
            cases.append(skeleton_case(name, img, label, skeleton_radius, channel))
    return cases, skipped
