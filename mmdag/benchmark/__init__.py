"""The benchmark room: what tools and tests use to survey and compare models.

- :mod:`.coverage`: the zoo survey (config discovery, random-weight models,
  one attack per family, the coverage table of the docs);
- :mod:`.invariants`: what every attacked family must satisfy;
- :mod:`.zoo_run`: Table 1 over a list of configs (``tools/zoo_benchmark.py``),
  with :mod:`.zoo_list` (the list), :mod:`.zoo_followups` (the budgeted and
  transfer runs), :mod:`.zoo_tables`, :mod:`.zoo_progress` and :mod:`.plots`
  (its pictures);
- :mod:`.demo_run`: the demo's steps (``tools/demo.py``, ``make demo``);
- :mod:`.speed`: a DAG iteration's speed, method by method
  (``tools/analysis/benchmark.py``).

None of it is needed to attack a model: :mod:`mmdag.apis` is the public API.
"""
