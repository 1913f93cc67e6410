"""Run Vaa3D tracing plugins (APP2, NeuTube, SmartTracing) on a mask or probability map.

The built-in tracer (:func:`nnunetv2_neurino.tracing.trace_mask`) is the default; this adapter is for
users who have Vaa3D installed and want the tracers the paper reports (its table 7 uses SmartTracing and
NeuTube). Vaa3D is found through ``VAA3D_BIN`` (path to the executable) or ``vaa3d`` on ``PATH``.

Command templates (placeholders ``{vaa3d} {input} {output} {background_threshold} {length_threshold}
{channel}``), each overridable by an environment variable:

=================  ================================  =====================================================
tracer             environment variable              default template
=================  ================================  =====================================================
vaa3d-app2         ``NEURINO_VAA3D_APP2_CMD``          ``{vaa3d} -x vn2 -f app2 -i {input} -o {output} -p NULL
                                                     {channel} {background_threshold} 1 1 0 0
                                                     {length_threshold}``
vaa3d-neutube      ``NEURINO_VAA3D_NEUTUBE_CMD``       ``{vaa3d} -x neuTube -f neutube_trace -i {input}
                                                     -o {output}``
vaa3d-smarttracing ``NEURINO_VAA3D_SMARTTRACING_CMD``  ``{vaa3d} -x SmartTracing -f smartTrace -i {input}
                                                     -o {output}``
=================  ================================  =====================================================

The APP2 line is Vaa3D's published usage. Plugin names and the way NeuTube / SmartTracing name
their output differ between Vaa3D builds (``vaa3d -x PLUGIN -f help`` lists a build's functions):
override the template when yours differs, e.g. prefix ``xvfb-run -a`` on a head-less Linux machine.
Templates are split like a shell command line but never run through a shell. When a plugin ignores
``-o`` the newest ``.swc`` it writes in the work folder is taken.

The volume is written as an 8-bit ``.v3draw`` (mask: 0/255; probabilities: round(255 p)). With the
default background threshold, a mask's foreground is everything non-zero and a probability map's is
``255 p > 255 threshold``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.v3d import write_v3draw
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree, read_swc

__all__ = ["TRACERS", "DEFAULT_TEMPLATES", "find_vaa3d", "command_template", "build_command",
           "trace_with_vaa3d"]

DEFAULT_TEMPLATES = {
    "vaa3d-app2": ("{vaa3d} -x vn2 -f app2 -i {input} -o {output} -p NULL {channel} {background_threshold} "
                   "1 1 0 0 {length_threshold}"),
    "vaa3d-neutube": "{vaa3d} -x neuTube -f neutube_trace -i {input} -o {output}",
    "vaa3d-smarttracing": "{vaa3d} -x SmartTracing -f smartTrace -i {input} -o {output}",
}
TRACERS = tuple(DEFAULT_TEMPLATES)
_INSTALL_HINT = ("Vaa3D is not installed or not found. Get it from https://vaa3d.org or the GitHub releases "
                 "(https://github.com/Vaa3D/release/releases), then set VAA3D_BIN=/path/to/vaa3d (or put "
                 "'vaa3d' on PATH). Without Vaa3D use the built-in tracer (--tracer builtin, the default).")


def _env_name(tracer: str) -> str:
    return "NEURINO_VAA3D_" + tracer.removeprefix("vaa3d-").upper() + "_CMD"


def find_vaa3d() -> str:
    """Path of the Vaa3D executable: ``$VAA3D_BIN``, else ``vaa3d`` / ``Vaa3D`` on PATH.

    Raises NeurinoError explaining how to install Vaa3D when none is found.
    """
    env = os.environ.get("VAA3D_BIN")
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env
        raise NeurinoError(f"VAA3D_BIN={env} is not an executable file. {_INSTALL_HINT}")
    for name in ("vaa3d", "Vaa3D", "vaa3d_msvc"):
        found = shutil.which(name)
        if found:
            return found
    raise NeurinoError(_INSTALL_HINT)


def command_template(tracer: str) -> str:
    """The template used for ``tracer``: ``$NEURINO_VAA3D_<TRACER>_CMD`` if set, else the default."""
    if tracer not in DEFAULT_TEMPLATES:
        raise NeurinoError(f"unknown Vaa3D tracer {tracer!r}; choose one of {', '.join(TRACERS)}")
    return os.environ.get(_env_name(tracer)) or DEFAULT_TEMPLATES[tracer]


def build_command(tracer: str, vaa3d: str, input_path: str | os.PathLike, output_path: str | os.PathLike,
                  background_threshold: float = 1, length_threshold: float = 1,
                  channel: int = 0) -> list[str]:
    """argv for ``tracer`` (template split shell-style, then placeholders filled per argument)."""
    template = command_template(tracer)
    values = {"vaa3d": vaa3d, "input": str(input_path), "output": str(output_path),
              "background_threshold": f"{background_threshold:g}",
              "length_threshold": f"{length_threshold:g}",
              "channel": str(int(channel))}
    try:
        return [tok.format(**values) for tok in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as e:
        raise NeurinoError(f"bad Vaa3D command template for {tracer} ({_env_name(tracer)}): {template!r}: "
                           f"{type(e).__name__} {e}; placeholders are {{{'}, {'.join(values)}}}") from None


def _to_uint8(volume: np.ndarray, is_probability: bool) -> np.ndarray:
    if is_probability:
        return np.clip(np.rint(np.asarray(volume, np.float64) * 255), 0, 255).astype(np.uint8)
    return np.where(np.asarray(volume) != 0, 255, 0).astype(np.uint8)


def trace_with_vaa3d(volume: np.ndarray, tracer: str, is_probability: bool = False, threshold: float = 0.5,
                     background_threshold: float | None = None, length_threshold: float = 1,
                     workdir: str | os.PathLike | None = None, timeout: float | None = None) -> SWCTree:
    """Trace a (Z, Y, X) mask or probability map with a Vaa3D plugin; returns its SWC (voxel coordinates).

    Parameters
    ----------
    volume : (Z, Y, X) mask (non-zero = foreground) or probabilities in [0, 1].
    tracer : one of :data:`TRACERS`.
    is_probability : write ``round(255 p)`` instead of a 0/255 mask.
    threshold : probability threshold, used for the default background threshold (255 * threshold).
    background_threshold : Vaa3D's background threshold on the 8-bit image (default 1 for masks).
    length_threshold : APP2's minimum branch length (published usage on masks: 1).
    workdir : where the image and outputs go (default: a temporary folder, removed afterwards).
    timeout : seconds before the plugin is stopped (NeurinoError).
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise NeurinoError(f"Vaa3D tracing needs a 3D (z, y, x) volume, got shape {volume.shape}")
    exe = find_vaa3d()
    if background_threshold is None:
        background_threshold = round(255 * threshold) if is_probability else 1
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="neurino-vaa3d-")) if own_dir else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        image = work / "input.v3draw"
        out = work / "output.swc"
        write_v3draw(image, _to_uint8(volume, is_probability))
        argv = build_command(tracer, exe, image, out, background_threshold, length_threshold)
        before = {p: p.stat().st_mtime for p in work.glob("*.swc")}
        try:
            proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NeurinoError(f"{tracer}: Vaa3D did not finish within {timeout} s: "
                               f"{shlex.join(argv)}") from None
        except OSError as e:
            raise NeurinoError(f"{tracer}: cannot run {argv[0]!r}: {e}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-800:]
            raise NeurinoError(f"{tracer}: Vaa3D exited with status {proc.returncode}: "
                               f"{shlex.join(argv)}\n{tail}")
        result = out if out.is_file() else None
        if result is None:
            new = [p for p in work.glob("*.swc") if before.get(p) != p.stat().st_mtime]
            result = max(new, key=lambda p: p.stat().st_mtime) if new else None
        if result is None:
            raise NeurinoError(f"{tracer}: Vaa3D finished but wrote no .swc in {work} "
                               f"(command: {shlex.join(argv)}); check the template ({_env_name(tracer)})")
        tree = read_swc(result)
        tree.source = f"{tracer}:{result.name}"
        return tree
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
