"""curvsketch's benchmarks, a package run from the repository root as ``python -m benchmarks...``.

* :mod:`benchmarks.harness`: what every script shares (run info, JSON and Markdown output,
  timing, peak memory, product counting, folders).
* :mod:`benchmarks.suite`: the comparison suite that ``make bench`` runs, in order
  ``problems``, ``accuracy_cost``, ``scaling_k``, ``scaling_d``, ``make_report``
  (``benchmarks/REPORT.md``).
* :mod:`benchmarks.probes`: one-off measurements behind single numbers of the README and
  the docs (HVP engines, estimators, scale runs, memory of out-of-core steps, the GPU
  check); a probe may import from the suite, the suite never from a probe.
* :mod:`benchmarks.import_graph`: the import-graph checker of ``src/curvsketch`` that the
  layer tests load.

Results kept in the repository are in ``benchmarks/results/``; scratch output goes to
``benchmarks/out/`` (ignored by git).
"""
