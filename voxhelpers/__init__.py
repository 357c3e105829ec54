"""voxhelpers: tested PyTorch re-implementations of five 3D / medical GAN and segmentation projects.

One module per concern (see README): ``config`` (profiles, data roots, per-system configs), ``io``
(arrays, weights, model cards, checkpoints), ``datasets``, ``synthetic``, ``transforms``, ``nets``,
``losses``, ``metrics``, ``steps``, ``training``, ``viewers``, ``plots``, ``bench``.
Nothing happens on import: submodules are imported where they are used.
"""

__version__ = "0.1.0"
