"""The build context the pipeline writes itself: exactly the files its key lists (see collect.py)."""
