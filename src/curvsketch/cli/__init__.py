"""The ``curvsketch`` command line."""
