"""Counseling data: formats, sources, chat templating, masking, packing."""
