"""Stage functions: plain typed functions of (settings, engine, …) returning small result dataclasses.

No module here imports doit; pipeline.tasks adapts them into the DAG.
"""
