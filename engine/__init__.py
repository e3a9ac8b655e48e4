"""Rotunda's engine: datasets, models, training, run directories, analysis, CLI.

Importing this package imports neither torch nor the app's packages; torch is loaded only
where training or checkpoints need it.
"""
__version__ = "0.1.0"
