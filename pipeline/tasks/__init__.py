"""Thin doit adapters: task dicts built from the config, actions that call the stages.

Only dodo.py imports this package.
"""
