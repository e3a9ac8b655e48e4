"""Widgets the views share: the GPU line and the plots."""
