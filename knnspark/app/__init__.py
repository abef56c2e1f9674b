"""The production jobs (``jobs/*.py`` and the ``knnspark`` command) on top of the library.

Modules: ``config`` (TOML configs, ``--set`` overrides, validation; no Spark), ``jobs`` (the
shared command line and exit codes), ``session`` (the one place a SparkSession is built), one
module per job (``fit``, ``score``, ``evaluate``, ``tune``), the helpers they share: ``inputs``
(reading and checking the input), ``models`` (loading a saved model), ``errors`` (worker errors
raised again on the driver), ``output`` (partitioned, staged, row-checked scoring output),
``metrics``, ``progress`` and ``fs`` (Hadoop file-system helpers).
Import the submodules directly; nothing is re-exported here, so loading a config stays cheap.
"""
