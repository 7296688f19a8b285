"""The ground floor: params, file formats, io, metrics, guards and devices, shared by every layer.

It imports nothing of the layers above it (candidates, features, rankers, titles, pipeline).
"""
