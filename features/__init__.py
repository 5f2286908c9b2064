"""Interaction histories in, point-in-time-correct feature tables out.

The bottom layer: it imports neither `training` nor `serving`.
"""
