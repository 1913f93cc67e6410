"""Atomic output: nothing half-written, nothing overwritten by accident."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nnunetv2_neurino.errors import NeurinoError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it is renamed onto ``path`` only if the block succeeds.

    Parameters
    ----------
    path : target file.
    force : when False, refuse to replace an existing file.
    """
    path = Path(path)
    if path.exists() and not force:
        raise NeurinoError(f"{path} already exists (pass --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + "".join(path.suffixes),
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs follow the umask like open()
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    An interrupted run leaves only a hidden ``.NAME.partial-*`` folder, never something that looks complete.
    """
    path = Path(path)
    if path.exists() and not force:
        raise NeurinoError(f"{path} already exists (pass --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp_path
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


_PICKLED_GLOBAL = r"\bGLOBAL\s+([\w.]+)"
_UNSAFE_GLOBAL_WORDINGS = ("unsupported global", "whose module", "is blocked")


def _torch_error_reason(e: BaseException) -> str:
    """The informative part of a torch.load error, without torch's advice to retry unsafely.

    torch wraps every weights-only failure in a paragraph recommending ``weights_only=False`` or allow-listing
    globals; following that advice for an untrusted file would run its code, so those lines are dropped.
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    unpickler = next((i for i, ln in enumerate(lines) if "WeightsUnpickler error:" in ln), None)
    if unpickler is not None:
        rest = lines[unpickler].split("WeightsUnpickler error:", 1)[1].strip()
        lines = ([rest] if rest else []) + lines[unpickler + 1:]
    safe = [ln for ln in lines if "weights_only" not in ln.lower() and "weights only" not in ln.lower()
            and "safe_globals" not in ln and not ln.startswith("Check the documentation")]
    return safe[0] if safe else type(e).__name__


def _first_foreign_global(path: str | os.PathLike) -> str | None:
    """First class/function a checkpoint's pickle names outside torch/numpy/collections, unpickling nothing.

    torch's weights-only unpickler stops at protocol-4 opcodes (``Unsupported operand 149``) before it sees a
    ``GLOBAL``, so the stream is scanned with :mod:`pickletools`, which only decodes opcodes. Returns None
    when the file is not a readable pickle (then it is merely corrupt).
    """
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                data = zf.read(name) if name else b""
        else:
            data = Path(path).read_bytes()
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL":
                found = ".".join(strings[-2:]) if len(strings) >= 2 else "…"
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if not found.startswith(("torch.", "collections.OrderedDict", "numpy.", "_codecs.encode")):
                return found
    except Exception:  # a broken stream is reported as corrupt by the caller
        return None
    return None


def safe_torch_load(path: str | os.PathLike) -> object:
    """The one checkpoint reader: ``torch.load(path, weights_only=True)`` on the CPU, never unpickling code.

    Besides tensors and plain containers only numpy scalars/dtypes are reconstructed (nnU-Net checkpoints log
    numpy losses). A file whose pickle names any other global (a class or function such as ``posix.system``)
    is refused with the same message whatever torch's wording ("Unsupported global: GLOBAL x" up to 2.5,
    "unsupported GLOBAL x whose module ... is blocked" in later versions); corrupt or truncated files become a
    NeurinoError naming the file. torch's suggestion to retry with ``weights_only=False`` is never repeated.

    Raises
    ------
    NeurinoError
        naming ``path``, for unsafe, corrupt, truncated or unreadable files.
    """
    import pickle
    import re

    import numpy as np
    import torch

    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray.scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(_PICKLED_GLOBAL, msg)
        foreign = None if found else _first_foreign_global(path)
        if found or foreign or any(w in msg.lower() for w in _UNSAFE_GLOBAL_WORDINGS):
            what = found.group(1) if found else foreign or "…"
            # from None: the chained torch error would print its "weights_only=False will likely succeed".
            raise NeurinoError(
                f"refused: {path} contains pickled objects (GLOBAL {what}), which this tool never unpickles; "
                "re-save the state dict as plain tensors or safetensors") from None
        reason = _torch_error_reason(e)
        raise NeurinoError(f"{path}: corrupt or not a PyTorch checkpoint ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        raise NeurinoError(f"{path}: corrupt or truncated checkpoint ({_torch_error_reason(e)})") from None
