"""Support for the spark-submit jobs in ``jobs/``: config loading, session building, runners.

Import the submodules directly (``knnspark.app.config`` needs no Spark; ``runners`` and
``session`` do); nothing is re-exported here so that loading a config stays cheap.
"""
