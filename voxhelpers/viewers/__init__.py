"""Interactive plotly / ipywidgets viewers: voxel grids, and CT segmentations (organ meshes, slices).

- :mod:`~voxhelpers.viewers.voxels`: voxel grids as marching-cubes ``Mesh3d`` scenes (:func:`voxel_mesh`,
  :func:`voxel_figure`), a browser over batches (:func:`voxel_viewer`), and the saved-output renderer that gives
  every saved mesh figure a static PNG (:func:`use_saved_output_renderer`, :func:`figure_png`).
- :mod:`~voxhelpers.viewers.segmentation`: organ surfaces in mm, truth beside prediction
  (:func:`organ_mesh_figure`), and axial CT slices with the label maps overlaid (:func:`ct_slice_figure`,
  :func:`ct_slice_viewer`).

Functions return plotly figures and ipywidgets; the notebook displays them. plotly, ipywidgets, matplotlib and
scikit-image are imported inside the functions, so importing this package stays light and has no side effects.
The widget helpers below are looked up on this package when a viewer is built, so patching
``voxhelpers.viewers._has_anywidget`` (as the tests do) reaches every viewer.
"""

from .segmentation import MAX_FACES, ct_slice_figure, ct_slice_viewer, organ_mesh_figure
from .voxels import (
    DEFAULT_COLORS,
    PNG_RENDERER,
    SAVED_OUTPUT_RENDERER,
    _has_anywidget,  # noqa: F401  private, used by the tests (patched there) and looked up here by the viewers
    _mimebundle,  # noqa: F401  private, used by the viewers
    _png_renderer,  # noqa: F401  private
    _viewer_figure,  # noqa: F401  private, used by the tests
    figure_png,
    use_saved_output_renderer,
    voxel_figure,
    voxel_mesh,
    voxel_viewer,
)

__all__ = [
    "DEFAULT_COLORS",
    "MAX_FACES",
    "PNG_RENDERER",
    "SAVED_OUTPUT_RENDERER",
    "ct_slice_figure",
    "ct_slice_viewer",
    "figure_png",
    "organ_mesh_figure",
    "use_saved_output_renderer",
    "voxel_figure",
    "voxel_mesh",
    "voxel_viewer",
]
