"""Atomic output: nothing half-written, nothing overwritten by accident, never an input or a user's folder.

Rules every command follows (see docs/reliability.md):

* an output path that equals, contains or lies inside an input path is refused, ``--force`` or not
  (:func:`check_output_paths`);
* the current folder, its parents, the home folder and ``/`` are never replaced;
* ``--force`` replaces an existing output *folder* only when it carries :data:`OUTPUT_MARKER`, the file
  :func:`atomic_directory` writes into every folder it creates — a folder neurino did not write is never
  deleted; the replacement is a rename, so a failed run leaves the old folder in place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nnunetv2_neurino.errors import NeurinoError

#: Marker file inside every output folder written through :func:`atomic_directory`.
OUTPUT_MARKER = ".neurino-output"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return a == b


def check_output_paths(outputs: Iterable[str | os.PathLike | None],
                       inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse any output that equals, contains or lies inside an input (symbolic links resolved).

    Parameters
    ----------
    outputs : files or folders the command will write (None entries are ignored).
    inputs : files or folders the command reads (None entries are ignored).

    Raises
    ------
    NeurinoError : naming the output and the input, whatever ``--force`` says.
    """
    ins = [(p, _resolved(p)) for p in inputs if p is not None]
    for out in outputs:
        if out is None:
            continue
        ro = _resolved(out)
        for raw, ri in ins:
            if _same_file(ro, ri):
                how = "is the input"
            elif ri.is_relative_to(ro):
                how = "contains the input"
            elif ro.is_relative_to(ri):
                how = "lies inside the input"
            else:
                continue
            raise NeurinoError(f"output {out} {how} {raw}: choose an output path outside the inputs "
                               "(neurino never writes over or into what it reads)")


def _protected_reason(path: Path) -> str | None:
    """Why ``path`` must never be deleted, or None."""
    rp = _resolved(path)
    cwd, home = _resolved(Path.cwd()), _resolved(Path.home())
    if rp == Path(rp.anchor):
        return "it is the file-system root"
    if cwd.is_relative_to(rp):
        return "it is the current folder" if rp == cwd else "it contains the current folder"
    if home.is_relative_to(rp):
        return "it is the home folder" if rp == home else "it contains the home folder"
    return None


def _refuse_existing_folder(path: Path, force: bool) -> None:
    """Raise unless ``path`` may be replaced (absent, or a neurino output with ``force``)."""
    if not path.exists() and not path.is_symlink():
        return
    reason = _protected_reason(path)
    if reason is not None:
        raise NeurinoError(f"{path} exists and {reason}; neurino never replaces it: choose a new output "
                           "folder with -o")
    if path.is_symlink() or not path.is_dir():
        raise NeurinoError(f"{path} exists and is not a folder: choose a new output folder with -o")
    if not (path / OUTPUT_MARKER).is_file():
        if not any(path.iterdir()):
            if force:
                return  # an empty folder holds nothing to lose
            raise NeurinoError(f"{path} already exists (empty; pass --force to use it)")
        raise NeurinoError(f"{path} already exists and was not written by neurino (it has no "
                           f"{OUTPUT_MARKER} file); neurino never deletes a folder it did not write: "
                           "choose a new output folder with -o, or move that one away yourself")
    if not force:
        raise NeurinoError(f"{path} already exists (an earlier neurino output; pass --force to replace it)")


def check_output_folder(path: str | os.PathLike, force: bool) -> None:
    """The checks of :func:`atomic_directory` without writing anything (to fail before long work).

    Raises
    ------
    NeurinoError : ``path`` is protected, not a folder, not a neurino output, or exists without ``force``.
    """
    _refuse_existing_folder(Path(path), force)


def _writable_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NeurinoError(f"cannot create the folder {path.parent}: {e.strerror or e}") from None
    if not path.parent.is_dir():
        raise NeurinoError(f"{path.parent} is not a folder, so {path} cannot be written")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise NeurinoError(f"cannot write {path}: the folder {path.parent} is not writable")


def refuse_existing_file(path: str | os.PathLike, force: bool) -> None:
    """NeurinoError when the output file ``path`` exists and ``force`` is False (nothing is written)."""
    if Path(path).exists() and not force:
        raise NeurinoError(f"{path} already exists (pass --force to overwrite)")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it is renamed onto ``path`` only if the block succeeds.

    Parameters
    ----------
    path : target file.
    force : when False, refuse to replace an existing file.

    Raises
    ------
    NeurinoError : ``path`` is a folder, exists without ``force``, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise NeurinoError(f"{path} is a folder; this output is a file: give a file name with -o")
    refuse_existing_file(path, force)
    _writable_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + "".join(path.suffixes),
                                   dir=path.parent)
    except OSError as e:
        raise NeurinoError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs follow the umask like open()
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def mark_output(folder: str | os.PathLike) -> None:
    """Write :data:`OUTPUT_MARKER` into ``folder``.

    Also called again after a writer that empties the folder (zarr's mode "w").
    """
    (Path(folder) / OUTPUT_MARKER).write_text("written by neurino; `--force` may replace this folder\n",
                                              encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    The folder gets :data:`OUTPUT_MARKER` and the umask's permissions (as ``mkdir`` would give).
    An interrupted run leaves only a hidden ``.NAME.partial-*`` folder, never something that looks complete;
    an existing ``path`` is replaced only under the rules of the module docstring.

    Raises
    ------
    NeurinoError : ``path`` may not be replaced, or its parent folder cannot be written.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = _resolved(path)
    _refuse_existing_folder(path, force)
    _writable_parent(path)
    try:
        tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    except OSError as e:
        raise NeurinoError(f"cannot write {path}: {e.strerror or e}") from None
    os.chmod(tmp_path, 0o777 & ~_current_umask())  # mkdtemp makes 0700; folders follow the umask like mkdir
    mark_output(tmp_path)
    old: Path | None = None
    try:
        yield tmp_path
        if path.exists():
            _refuse_existing_folder(path, force)  # may have changed during the run
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)  # a rename: the old output stays whole until the new one is in
        os.replace(tmp_path, path)
    except BaseException:
        if old is not None and (old / path.name).exists() and not path.exists():
            os.replace(old / path.name, path)  # put the previous output back
        raise
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


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


def json_clean(value: Any) -> Any:
    """``value`` with NaN/inf floats → ``None`` and numpy scalars / arrays → Python numbers / lists."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_dumps(obj: Any) -> str:
    """Strict JSON text of ``obj`` (indent 2): NaN / inf written as ``null`` (strict readers reject NaN)."""
    return json.dumps(json_clean(obj), indent=2, allow_nan=False, default=str)
