"""Back-projection: the adjoint of the parallel-beam projector, spreading each X-ray pixel along its ray.

:func:`backproject_parallel` is the exact transpose of :func:`voxhelpers.ops.projector.project_parallel` (up to the
spacing factor): for a volume v and an image w of the same view, ⟨P v, w⟩ = Δ_ray · ⟨v, Bᵀ w⟩ (tested). It lifts a
2-D image or feature map into the volume's frame — the X-ray → CT generator uses it to place each view's features
where their rays run, and the back-projection baseline of the evaluation is the average of the two lifted views.
"""

from __future__ import annotations

import torch

from .projector import _check_axes, _check_view, _view_frame

__all__ = ["backproject_parallel"]


def backproject_parallel(image: torch.Tensor, depth: int, view: str = "pa", axes: str = "RAS") -> torch.Tensor:
    """Spread a parallel-beam image along its rays: the adjoint of ``project_parallel`` (without the spacing factor).

    Args:
        image: (..., rows, cols) — rows superior → inferior, columns as :mod:`voxhelpers.ops.projector` says for
            ``view`` — e.g. (B, C, rows, cols) features or X-rays.
        depth: number of voxels along the rays (the volume's size along the view's ray axis).
        view: ``"pa"``, ``"ap"`` or ``"lateral"``.
        axes: nibabel codes of the output volume's last three axes (``"RAS"``, ``"PLI"``...).

    Returns:
        (..., X, Y, Z) in the order ``axes`` names, constant along the ray axis (an expanded view: no copy; call
        ``.contiguous()`` before writing into it).

    Raises:
        ValueError: an unknown view or axes, depth < 1, an image with fewer than two dimensions.
    """
    if not isinstance(image, torch.Tensor) or image.ndim < 2:
        raise ValueError(f"image must be a tensor (..., rows, cols), got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    (ray, _), (row, row_sign), (_, col_sign) = _view_frame(_check_axes(axes), _check_view(view))
    flips = [d for d, s in ((-2, row_sign), (-1, col_sign)) if s < 0]
    p = image.flip(flips) if flips else image  # undo the display flips: (..., first, second) non-ray axes
    if [d for d in range(3) if d != ray].index(row) == 1:
        p = p.transpose(-1, -2)
    p = p.unsqueeze(p.ndim - 2 + ray)  # the ray axis back in its place among the last three
    shape = list(p.shape)
    shape[p.ndim - 3 + ray] = int(depth)
    return p.expand(shape)


def backproject(image: torch.Tensor, shape, spacing=(1.0, 1.0, 1.0), view: str = "pa", axes: str = "RAS",
                beam: str = "parallel", **geometry) -> torch.Tensor:
    """The adjoint of either projector: :func:`backproject_parallel` (times the spacing along the rays) for
    ``beam="parallel"``; for ``"cone"`` the exact transpose of the discretised :func:`project_cone` (its gradient with
    respect to the volume of ⟨project_cone(v), image⟩, which does not depend on v: the projector is linear).

    Args:
        image: (B, C, rows, cols) or (B, rows, cols), as the projector returned it.
        shape: the volume's (X, Y, Z).
        spacing, view, axes: as for the projectors.
        beam: ``"parallel"`` or ``"cone"``.
        **geometry: cone-beam keywords of :func:`project_cone` (``sod``, ``sid``, ``detector_size``, ``n_samples``);
            the image size is the image's.

    Returns:
        (B, C, X, Y, Z) or (B, X, Y, Z), float like ``image``; no gradient.
    """
    from .projector import _check_spacing, project_cone

    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be the volume's (X, Y, Z), got {shape}")
    if beam == "parallel":
        (ray, _), _, _ = _view_frame(_check_axes(axes), _check_view(view))
        out = backproject_parallel(image, shape[ray], view, axes) * _check_spacing(spacing)[ray]
        return out.contiguous()
    if beam != "cone":
        raise ValueError(f"beam must be 'parallel' or 'cone', got {beam!r}")
    image = image.detach()
    volume = torch.zeros(*image.shape[:-2], *shape, dtype=image.dtype, device=image.device, requires_grad=True)
    with torch.enable_grad():
        p = project_cone(volume, spacing, view, axes, image_size=tuple(image.shape[-2:]), **geometry)
        (grad,) = torch.autograd.grad((p * image).sum(), volume)
    return grad
