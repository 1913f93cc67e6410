"""Vaa3D raw (``.v3draw``) and PackBits-compressed raw (``.v3dpbd``) image files.

Layout (all integers in the byte order named by the endianness character):

``.v3draw``
    24-byte key ``raw_image_stack_by_hpeng``, endianness char ``B``/``L``, int16 datatype
    (1 = uint8, 2 = uint16, 4 = float32), 4 sizes (x, y, z, c) as int32 (older files: int16),
    then the voxels in C order of shape (c, z, y, x).
``.v3dpbd``
    24-byte key ``v3d_volume_pkbitdf_encod``, endianness char, int16 datatype (1 or 2), 4 int32 sizes,
    then one compressed byte stream of all voxels (same (c, z, y, x) order), made of runs:

    8-bit: code 0–32 → ``code+1`` literal bytes follow; 33–127 → ``code-32`` differences of 2 bits
    each (4 per byte, least significant bits first; 0, 1, 2 or 3 = −1) added to the previous voxel;
    128–255 → the next byte repeated ``code-127`` times.

    16-bit: code 0–31 → ``code+1`` literal values; 32–79 / 80–182 / 183–222 → ``code-31`` /
    ``code-79`` / ``code-182`` differences of 3 / 4 / 5 bits (most significant bits first; a field
    ``f`` above 4 / 8 / 16 means ``4-f`` / ``8-f`` / ``16-f``); 223–255 → the next value repeated
    ``code-222`` times. Arithmetic wraps modulo 2**8 / 2**16.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

RAW_KEYS = (b"raw_image_stack_by_hpeng", b"raw5image_stack_by_hpeng")
PBD_KEY = b"v3d_volume_pkbitdf_encod"
_KEY_LEN = 24
_DTYPES = {1: "u1", 2: "u2", 4: "f4"}

# 16-bit difference runs: (bits, first code, largest count, largest positive delta)
_PBD16_DIFF = ((3, 32, 48, 4), (4, 80, 103, 8), (5, 183, 40, 16))


def _endian(char: bytes, path: Path) -> str:
    if char == b"L":
        return "<"
    if char == b"B":
        return ">"
    raise NeurinoError(f"{path}: endianness byte is {char!r}, expected b'L' or b'B'")


# ----------------------------------------------------------------------------------------- v3draw
def read_v3draw(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.v3draw`` file.

    Returns
    -------
    ndarray of shape (c, z, y, x), dtype uint8, uint16 or float32.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _KEY_LEN + 3 or data[:_KEY_LEN] not in RAW_KEYS:
        raise NeurinoError(f"{path}: not a Vaa3D raw file (missing 'raw_image_stack_by_hpeng' key)")
    dim = 4  # the 5-D key is read as 4-D, like Vaa3D's own loader of single-time-point files
    endian = _endian(data[_KEY_LEN:_KEY_LEN + 1], path)
    (dtype_code,) = struct.unpack(endian + "h", data[_KEY_LEN + 1:_KEY_LEN + 3])
    if dtype_code not in _DTYPES:
        raise NeurinoError(f"{path}: datatype code {dtype_code} is not 1 (uint8), 2 (uint16) or 4 (float32)")
    for size_fmt, size_bytes in (("i", 4), ("h", 2)):  # current files: int32 sizes; old files: int16
        header = _KEY_LEN + 3 + dim * size_bytes
        if len(data) < header:
            continue
        sizes = struct.unpack(endian + size_fmt * dim, data[_KEY_LEN + 3:header])
        if min(sizes) < 1:
            continue
        if header + int(np.prod(sizes, dtype=np.int64)) * dtype_code == len(data):
            x, y, z, c = sizes
            arr = np.frombuffer(data, dtype=endian + _DTYPES[dtype_code], offset=header)
            return arr.reshape(c, z, y, x).astype(_DTYPES[dtype_code])
    raise NeurinoError(f"{path}: file size {len(data)} bytes does not match the sizes in its header "
                       "(truncated or corrupt .v3draw)")


def write_v3draw(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write (z, y, x) or (c, z, y, x) uint8/uint16/float32 voxels, little-endian, int32 sizes."""
    image = _as_czyx(image, ("u1", "u2", "f4"))
    code = {1: 1, 2: 2, 4: 4}[image.dtype.itemsize]
    c, z, y, x = image.shape
    header = RAW_KEYS[0] + b"L" + struct.pack("<h4i", code, x, y, z, c)
    Path(path).write_bytes(header + image.astype(image.dtype.newbyteorder("<")).tobytes())


def _as_czyx(image: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise NeurinoError(f"Vaa3D images are (z, y, x) or (c, z, y, x); got shape {image.shape}")
    if image.dtype.kind + str(image.dtype.itemsize) not in kinds:
        raise NeurinoError(f"Vaa3D files hold {', '.join(kinds)} voxels; got {image.dtype}")
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------- v3dpbd
def read_v3dpbd(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.v3dpbd`` file.

    Returns
    -------
    ndarray of shape (c, z, y, x), dtype uint8 or uint16.
    """
    path = Path(path)
    data = path.read_bytes()
    header = _KEY_LEN + 1 + 2 + 16
    if len(data) < header or data[:_KEY_LEN] != PBD_KEY:
        raise NeurinoError(f"{path}: not a Vaa3D PBD file (missing 'v3d_volume_pkbitdf_encod' key)")
    endian = _endian(data[_KEY_LEN:_KEY_LEN + 1], path)
    (code,) = struct.unpack(endian + "h", data[_KEY_LEN + 1:_KEY_LEN + 3])
    sizes = struct.unpack(endian + "4i", data[_KEY_LEN + 3:header])
    if code not in (1, 2):
        raise NeurinoError(f"{path}: PBD datatype code {code} is not 1 (uint8) or 2 (uint16)")
    if min(sizes) < 1:
        raise NeurinoError(f"{path}: invalid sizes {sizes} in header")
    n = int(np.prod(sizes, dtype=np.int64))
    stream = np.frombuffer(data, dtype=np.uint8, offset=header)
    try:
        flat = decode_pbd8(stream, n) if code == 1 else decode_pbd16(stream, n, endian)
    except ValueError as e:
        raise NeurinoError(f"{path}: corrupt PackBits stream ({e})") from None
    x, y, z, c = sizes
    return flat.reshape(c, z, y, x)


def write_v3dpbd(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image`` of shape (z, y, x) or (c, z, y, x), uint8 or uint16, little-endian."""
    image = _as_czyx(image, ("u1", "u2"))
    c, z, y, x = image.shape
    code = image.dtype.itemsize
    stream = encode_pbd8(image.ravel()) if code == 1 else encode_pbd16(image.ravel())
    Path(path).write_bytes(PBD_KEY + b"L" + struct.pack("<h4i", code, x, y, z, c) + stream)


def _parse(stream: np.ndarray, n: int, spans) -> tuple[list, int]:
    """Walk the run codes; ``spans(code) -> (kind, count, nbytes)``. Returns the runs and the voxel count."""
    runs = []
    cp, dp, size = 0, 0, len(stream)
    codes = stream.tolist()
    while dp < n:
        if cp >= size:
            raise ValueError(f"stream ends after {dp} of {n} voxels")
        kind, count, nbytes = spans(codes[cp])
        if cp + 1 + nbytes > size:
            raise ValueError(f"run at byte {cp} needs {nbytes} bytes past the end of the stream")
        if kind == "diff" and dp == 0:
            raise ValueError("difference run before any voxel")
        runs.append((kind, cp + 1, dp, count))
        cp += 1 + nbytes
        dp += count
    if dp != n:
        raise ValueError(f"runs decode to {dp} voxels, header says {n}")
    return runs, cp


def _spans8(code: int):
    if code < 33:
        return "lit", code + 1, code + 1
    if code < 128:
        count = code - 32
        return "diff", count, (count + 3) // 4
    return "rep", code - 127, 1


def _spans16(code: int):
    if code < 32:
        return "lit", code + 1, 2 * (code + 1)
    for i, (bits, first, _, _) in enumerate(_PBD16_DIFF):
        last = _PBD16_DIFF[i + 1][1] if i < 2 else 223
        if code < last:
            count = code - first + 1
            return f"diff{i}", count, (count * bits + 7) // 8
    return "rep", code - 222, 2


def _assemble(runs, n: int, out_dtype, literal, repeat, deltas, modulus: int) -> np.ndarray:
    """Fill literal/repeat runs, then resolve difference runs by a segmented cumulative sum."""
    out = np.zeros(n, dtype=np.int64)
    is_delta = np.zeros(n, dtype=bool)
    for kind, src, dst, count in runs:
        if kind == "lit":
            out[dst:dst + count] = literal(src, count)
        elif kind == "rep":
            out[dst:dst + count] = repeat(src)
        else:
            out[dst:dst + count] = deltas(kind, src, count)
            is_delta[dst:dst + count] = True
    if is_delta.any():
        # value = last anchor (literal/repeat voxel) before it + sum of the deltas since that anchor
        anchor_idx = np.where(~is_delta, np.arange(n), 0)
        np.maximum.accumulate(anchor_idx, out=anchor_idx)
        csum = np.cumsum(np.where(is_delta, out, 0))
        out = np.where(is_delta, out[anchor_idx] + csum - csum[anchor_idx], out)
    return np.mod(out, modulus).astype(out_dtype)


def decode_pbd8(stream: np.ndarray, n: int) -> np.ndarray:
    """Decode an 8-bit PBD byte stream into ``n`` uint8 voxels (raises ValueError when corrupt)."""
    stream = np.asarray(stream, dtype=np.uint8)
    runs, _ = _parse(stream, n, _spans8)

    def deltas(kind, src, count):
        packed = stream[src:src + (count + 3) // 4]
        fields = (packed[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
        d = fields.ravel()[:count].astype(np.int64)
        d[d == 3] = -1
        return d

    return _assemble(runs, n, np.uint8, lambda s, c: stream[s:s + c], lambda s: stream[s], deltas, 256)


def decode_pbd16(stream: np.ndarray, n: int, endian: str = "<") -> np.ndarray:
    """Decode a 16-bit PBD byte stream into ``n`` uint16 voxels (raises ValueError when corrupt)."""
    stream = np.asarray(stream, dtype=np.uint8)
    runs, _ = _parse(stream, n, _spans16)
    word = np.dtype(endian + "u2")

    def literal(src, count):
        return np.frombuffer(stream[src:src + 2 * count].tobytes(), dtype=word)

    def repeat(src):
        return int(np.frombuffer(stream[src:src + 2].tobytes(), dtype=word)[0])

    def deltas(kind, src, count):
        bits, _, _, top = _PBD16_DIFF[int(kind[-1])]
        nbytes = (count * bits + 7) // 8
        bitstream = np.unpackbits(stream[src:src + nbytes])[:count * bits].reshape(count, bits)
        f = bitstream.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1))
        return np.where(f > top, top - f, f)

    return _assemble(runs, n, np.uint16, literal, repeat, deltas, 65536)


def _run_lengths(values: np.ndarray) -> np.ndarray:
    """For each position, how many consecutive equal values start there."""
    n = len(values)
    change = np.flatnonzero(np.diff(values) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    run_end = np.repeat(ends, ends - starts)
    return run_end - np.arange(n)


def _ok_lengths(ok: np.ndarray) -> np.ndarray:
    """For each position i, how many consecutive True values of ``ok`` start at i."""
    n = len(ok)
    idx = np.arange(n)
    nxt_bad = np.where(~ok, idx, n)
    nxt_bad = np.minimum.accumulate(nxt_bad[::-1])[::-1]
    return nxt_bad - idx


def _encode(values: np.ndarray, diff_ok: list[np.ndarray], lit_max: int, rep_max: int,
            emit_lit, emit_rep, emit_diff, min_rep: int, min_diff: list[int]) -> bytes:
    """Greedy run choice: repeat runs, else the longest useful difference run, else literals."""
    n = len(values)
    rep_len = _run_lengths(values)
    diff_len = [_ok_lengths(ok) for ok in diff_ok]
    out = bytearray()
    lit_start = -1
    i = 0

    def flush(upto):
        nonlocal lit_start
        while lit_start >= 0 and lit_start < upto:
            count = min(lit_max, upto - lit_start)
            emit_lit(out, lit_start, count)
            lit_start += count
        lit_start = -1

    while i < n:
        r = int(rep_len[i])
        if r >= min_rep:
            flush(i)
            count = min(r, rep_max)
            emit_rep(out, i, count)
            i += count
            continue
        best = None
        if i > 0:
            for k, lengths in enumerate(diff_len):
                length = int(lengths[i])
                if length >= min_diff[k] and (best is None or length > best[1]):
                    best = (k, length)
        if best is not None:
            flush(i)
            count = emit_diff(out, best[0], i, best[1])
            i += count
            continue
        if lit_start < 0:
            lit_start = i
        i += 1
    flush(n)
    return bytes(out)


def encode_pbd8(values: np.ndarray) -> bytes:
    """Encode uint8 voxels (1-D) into an 8-bit PBD byte stream."""
    v = np.asarray(values, dtype=np.uint8).ravel()
    d = np.zeros(len(v), dtype=np.int64)
    d[1:] = v[1:].astype(np.int64) - v[:-1]
    ok = (d >= -1) & (d <= 2)
    ok[0] = False

    def emit_lit(out, s, c):
        out.append(c - 1)
        out.extend(v[s:s + c].tobytes())

    def emit_rep(out, s, c):
        out.extend((c + 127, int(v[s])))

    def emit_diff(out, k, s, length):
        c = min(length, 95)
        f = np.where(d[s:s + c] == -1, 3, d[s:s + c]).astype(np.uint8)
        f = np.concatenate([f, np.zeros((-c) % 4, dtype=np.uint8)]).reshape(-1, 4)
        packed = f[:, 0] | f[:, 1] << 2 | f[:, 2] << 4 | f[:, 3] << 6
        out.append(c + 32)
        out.extend(packed.astype(np.uint8).tobytes())
        return c

    return _encode(v, [ok], 33, 128, emit_lit, emit_rep, emit_diff, min_rep=3, min_diff=[6])


def encode_pbd16(values: np.ndarray) -> bytes:
    """Encode uint16 voxels (1-D) into a little-endian 16-bit PBD byte stream."""
    v = np.asarray(values, dtype=np.uint16).ravel()
    d = np.zeros(len(v), dtype=np.int64)
    d[1:] = v[1:].astype(np.int64) - v[:-1]
    oks = []
    for _, _, _, top in _PBD16_DIFF:
        ok = (d >= -(top - 1)) & (d <= top)
        ok[0] = False
        oks.append(ok)

    def emit_lit(out, s, c):
        out.append(c - 1)
        out.extend(v[s:s + c].astype("<u2").tobytes())

    def emit_rep(out, s, c):
        out.append(c + 222)
        out.extend(v[s:s + 1].astype("<u2").tobytes())

    def emit_diff(out, k, s, length):
        bits, first, max_count, top = _PBD16_DIFF[k]
        c = min(length, max_count)
        f = np.where(d[s:s + c] < 0, top - d[s:s + c], d[s:s + c])
        bitfields = ((f[:, None] >> np.arange(bits - 1, -1, -1)) & 1).astype(np.uint8).ravel()
        out.append(c + first - 1)
        out.extend(np.packbits(bitfields).tobytes())
        return c

    return _encode(v, oks, 32, 33, emit_lit, emit_rep, emit_diff, min_rep=2, min_diff=[4, 4, 4])
