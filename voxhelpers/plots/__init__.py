"""Static matplotlib figures of voxel grids, images and training histories, saved to ``images/``.

- :mod:`~voxhelpers.plots.voxels`: voxel grids in the seed's style (rows of samples, condition sheets).
- :mod:`~voxhelpers.plots.images`: image → voxel reconstructions and grids of RGB renders.
- :mod:`~voxhelpers.plots.figures`: training-history curves, atomic PNG saving and the figure helpers.
- :mod:`~voxhelpers.plots.sheets`: the sample-sheet callback for :func:`voxhelpers.training.fit`.
- :mod:`~voxhelpers.plots.scenes`: a static copy of a plotly figure of voxel meshes (the viewers' PNG fallback).
- :mod:`~voxhelpers.plots.segmentation`: CT slices with organ label maps overlaid (system 5).
- :mod:`~voxhelpers.plots.xray_ct`: the two X-rays and slices of real and generated CTs (system 3).
- :mod:`~voxhelpers.plots.retina`: vessel masks, stage sequences, the joined pipeline, the CRGAN's convergence
  (system 4).
- :mod:`~voxhelpers.plots._checks`: input checks shared with :mod:`voxhelpers.viewers`.

Every figure function returns a :class:`matplotlib.figure.Figure`, already closed in pyplot; the caller displays
or saves it (:func:`save_figure`). matplotlib is imported inside the functions and plotly is left to
:mod:`voxhelpers.viewers`, so importing this package has no side effects.
"""

from .figures import history_figure, save_figure
from .images import image_grid_figure, reconstruction_figure
from .retina import crgan_progress_figure, density_figure, joined_figure, sequence_figure, vessel_figure
from .scenes import mesh_scenes_figure
from .segmentation import organ_colors, segmentation_figure
from .sheets import SampleSheets
from .voxels import SEED_COLORS, SHEET_ROW_LABELS, sample_sheet_figure, voxel_faces, voxel_row_figure
from .xray_ct import xray_ct_figure

__all__ = [
    "crgan_progress_figure",
    "density_figure",
    "joined_figure",
    "sequence_figure",
    "vessel_figure",
    "SampleSheets",
    "SEED_COLORS",
    "SHEET_ROW_LABELS",
    "voxel_faces",
    "voxel_row_figure",
    "sample_sheet_figure",
    "reconstruction_figure",
    "image_grid_figure",
    "mesh_scenes_figure",
    "history_figure",
    "save_figure",
    "segmentation_figure",
    "organ_colors",
    "xray_ct_figure",
]
