"""jupyterhub-image-pipeline: build, test, publish, scan, patch and slim JupyterHub images as a doit DAG."""

from __future__ import annotations

__version__ = "0.1.0"
