"""Data for the demo and the tests.

- :mod:`.synthetic_voc`: a seeded synthetic set in the Pascal VOC2012 layout
  (``tools/make_synthetic_voc.py``).
"""
