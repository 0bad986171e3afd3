"""The benchmark room: what tools and tests use to survey and compare models.

- :mod:`.coverage`: the zoo survey (config discovery, random-weight models,
  one attack per family, the coverage table of the docs);
- :mod:`.invariants`: what every attacked family must satisfy;
- :mod:`.zoo_benchmark`: Table 1 over a list of configs (``tools/zoo_benchmark.py``);
- :mod:`.plots`: its pictures.

None of it is needed to attack a model: :mod:`mmdag.apis` is the public API.
"""
