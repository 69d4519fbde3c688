"""The comparison suite against the neighbours (``make bench``; ``benchmarks/REPORT.md``).

Run in order from the repository root, each as ``python -m benchmarks.suite.NAME``:
``problems`` (builds and caches the two problems and their references), ``accuracy_cost``,
``scaling_k``, ``scaling_d`` and ``make_report``. ``methods`` holds the solvers behind one
signature and the accuracy metrics. Nothing here imports from :mod:`benchmarks.probes`.
"""
