"""voxhelpers: tested PyTorch re-implementations of five 3D / medical GAN and segmentation projects.

Roles as packages, one file per system inside each role (see README and ``docs/adding_a_system.md``):
``config`` (profiles, data roots, one config dataclass per system), ``data`` (io, the grid validator, readers,
stand-ins, Datasets), ``ops`` (the voxel renderer), ``nets``, ``losses``, ``metrics``, ``systems`` (each system
declared once, and the registry), ``training`` (the one ``fit`` loop), ``inference`` (sampling, pretrained weights,
evaluation protocols), ``plots``, ``viewers``, ``reports``, ``bench``; ``python -m voxhelpers`` is the command line.
Nothing happens on import: submodules are imported where they are used.
"""

__version__ = "0.1.0"
