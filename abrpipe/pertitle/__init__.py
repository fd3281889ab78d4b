"""Per-title (content-adaptive) ladder maths for abrpipe.

Modules:

* :mod:`abrpipe.pertitle.hull` -- pure rate/quality maths: Pareto filtering, the upper convex hull,
  the per-resolution PCHIP envelope and rung selection.
* :mod:`abrpipe.pertitle.bdrate` -- Bjøntegaard-delta rate (``bjontegaard`` package, PCHIP).
* :mod:`abrpipe.pertitle.metrics` -- finding an ffmpeg with a usable quality metric and measuring with it.
* :mod:`abrpipe.pertitle.plot` -- optional matplotlib plot of the curves, hull and rungs.
* :mod:`abrpipe.pertitle.analysis` -- trial encodes on sampled windows, scoring, and the per-title ladder.
* :mod:`abrpipe.pertitle.ladder` -- the chosen rungs as a profile (rounding, TOML that loads back).
* :mod:`abrpipe.pertitle.compare` -- encode the per-title and the fixed ladder, measure both, BD-rate.

Nothing is imported eagerly here, so ``import abrpipe.pertitle.hull`` never pulls in matplotlib,
bjontegaard or subprocess machinery.
"""
