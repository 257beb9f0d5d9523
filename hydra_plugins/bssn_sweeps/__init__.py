"""Hydra plugins of this project: the ``grids`` sweeper (``hydra/sweeper=grids``)."""
