"""The one Dockerfile model: parsing, word expansion, and what a build reads (see analysis.py)."""
