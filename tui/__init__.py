"""Rotunda's terminal app. Imports no torch: it reads runs and launches the engine."""
