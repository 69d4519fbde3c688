"""One-off benchmark probes, each run as ``python -m benchmarks.probes.NAME``.

Each measures what one number of the README or the docs rests on (seconds per HVP, FLOPs,
estimator errors, scale runs, memory of out-of-core steps, the GPU check of
``benchmarks/probes/gpu_check.sh``). Probes may import from :mod:`benchmarks.suite` (e.g.
its problems) and :mod:`benchmarks.harness`.
"""
