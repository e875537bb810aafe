"""Gaussians as a 3D Gaussian splatting PLY: the layout of the reference 3DGS code, which splat viewers and
editors open.

One binary little-endian `vertex` element, a row per Gaussian, every property float32, in this order:

    x y z                  position, metres (the frame is the caller's; `avatar export` writes the head frame)
    nx ny nz               zero normals
    f_dc_0 f_dc_1 f_dc_2   degree-0 spherical-harmonic colour: (rgb - 0.5) / SH_C0
    f_rest_0 .. f_rest_44  the higher degrees (up to 3), zero: this avatar's colour does not depend on the view
    opacity                logit of the opacity
    scale_0 scale_1 scale_2  log of the standard deviations, metres
    rot_0 rot_1 rot_2 rot_3  unit quaternion (w, x, y, z)

Reading accepts any PLY with these names (other properties, such as non-zero `f_rest_*`, are ignored) and
returns the activated Gaussians, so a written set reads back as it was, to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from avatar.core.atomic import write_with
from avatar.core.errors import AvatarError
from avatar.model.gaussians import GaussianSet, inverse_sigmoid

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic, 1 / (2 sqrt(pi))
REST_COEFFICIENTS = 45  # 15 higher-degree coefficients per channel, up to degree 3
POSITION = ("x", "y", "z")
NORMAL = ("nx", "ny", "nz")
COLOUR = ("f_dc_0", "f_dc_1", "f_dc_2")
REST = tuple(f"f_rest_{i}" for i in range(REST_COEFFICIENTS))
SCALE = ("scale_0", "scale_1", "scale_2")
ROTATION = ("rot_0", "rot_1", "rot_2", "rot_3")
PROPERTIES = (*POSITION, *NORMAL, *COLOUR, *REST, "opacity", *SCALE, *ROTATION)
READ_FIX = "Pass a 3D Gaussian splatting PLY (e.g. one written by `avatar export`)"


def splat_rows(gaussians: GaussianSet) -> np.ndarray:
    """-> [N] structured float32 array with the `PROPERTIES` of `gaussians`, as written to the PLY."""
    rows = np.zeros(gaussians.num, dtype=[(name, "<f4") for name in PROPERTIES])
    columns = {
        POSITION: gaussians.means,
        COLOUR: (gaussians.colors - 0.5) / SH_C0,
        ("opacity",): inverse_sigmoid(gaussians.opacities)[:, None],
        SCALE: torch.log(gaussians.scales),
        ROTATION: torch.nn.functional.normalize(gaussians.quats, dim=-1),
    }
    for names, values in columns.items():
        values = values.detach().float().cpu().numpy()
        for k, name in enumerate(names):
            rows[name] = values[:, k]
    return rows


def write_splat_ply(path: Path, gaussians: GaussianSet) -> None:
    """Writes `gaussians` to `path` in the layout of the module docstring (atomically)."""
    element = PlyElement.describe(splat_rows(gaussians), "vertex")
    write_with(
        Path(path), lambda temporary: PlyData([element], text=False, byte_order="<").write(str(temporary))
    )


def read_splat_ply(path: Path) -> GaussianSet:
    """The activated Gaussians of a 3DGS PLY (float32, on the CPU); AvatarError naming the file when it is not
    one or lacks a property this layout needs."""
    path = Path(path)
    try:
        ply = PlyData.read(str(path))
    except FileNotFoundError as error:
        raise AvatarError("there is no such PLY file", path=path, fix=READ_FIX) from error
    except Exception as error:  # plyfile raises several types for a malformed file
        raise AvatarError(f"this is not a readable PLY file ({error})", path=path, fix=READ_FIX) from error
    if "vertex" not in ply:
        raise AvatarError("the PLY file has no vertex element", path=path, fix=READ_FIX)
    vertex = ply["vertex"]
    names = {prop.name for prop in vertex.properties}
    missing = [name for name in (*POSITION, *COLOUR, "opacity", *SCALE, *ROTATION) if name not in names]
    if missing:
        raise AvatarError(
            f"the PLY file's vertices lack {', '.join(missing)}: not a Gaussian splatting PLY",
            path=path,
            fix=READ_FIX,
        )

    def columns(group: tuple[str, ...]) -> torch.Tensor:
        return torch.from_numpy(
            np.stack([np.asarray(vertex[name], dtype=np.float32) for name in group], axis=-1)
        )

    values = [columns(POSITION), columns(COLOUR), columns(("opacity",)), columns(SCALE), columns(ROTATION)]
    if not all(torch.isfinite(value).all() for value in values):
        raise AvatarError("the PLY file holds non-finite values", path=path, fix=READ_FIX)
    means, colour, opacity, log_scales, quats = values
    return GaussianSet(
        means=means,
        quats=torch.nn.functional.normalize(quats, dim=-1),
        scales=torch.exp(log_scales),
        opacities=torch.sigmoid(opacity[:, 0]),
        colors=(colour * SH_C0 + 0.5).clamp(0.0, 1.0),
    )
