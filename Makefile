# mmdag: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv if it is missing and install the pinned stack once
# (the mmcv source build takes ~13 min the first time; pip's wheel cache makes
# later installs fast). A second run installs nothing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.mmdag-installed
REQS   := requirements/build.txt requirements/mminstall.txt requirements/runtime.txt requirements/tests.txt requirements/oracles.txt requirements/pinned.txt setup.py
PINNED := -c requirements/pinned.txt
# where pip takes torch from: empty = pip's default index (a CUDA build on
# Linux x86-64 from PyPI); a CPU-only build, e.g.
#   make setup TORCH_SOURCE="--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple"
TORCH_SOURCE ?=

.PHONY: setup lint demo test test-numerics test-slow test-zoo test-all clean-demo benchmark-demo setup-oldest test-oldest docs

setup: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || { echo "[setup] creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "[setup] installing torch (pinned: requirements/pinned.txt) and build tools"
	$(PIP) install -q -r requirements/build.txt $(PINNED) $(TORCH_SOURCE)
	@if $(PY) -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then \
		echo "[setup] mmcv 2.1.0 with ops already installed"; \
	else \
		echo "[setup] building mmcv 2.1.0 with ops (about 13 min on 2 cores the first time; cached afterwards)"; \
		MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install --no-build-isolation -r requirements/mminstall.txt $(PINNED) || exit 1; \
	fi
	@echo "[setup] installing mmengine, mmdet, mmsegmentation and test tools"
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt $(PINNED)
	@echo "[setup] installing the tests' reference attacks (--no-deps: torch stays as it is)"
	$(PIP) install -q --no-deps -r requirements/oracles.txt
	@echo "[setup] installing mmdag (editable)"
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@$(PY) -c "import mmcv.ops, mmdet, mmseg, mmdag; print('[setup] ok: mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmdag', mmdag.__version__)"
	@touch $(STAMP)

# the style checks (CI runs them first): flake8 and isort, configured in
# setup.cfg; `.venv/bin/python -m isort mmdag tools tests` fixes the import order
lint: setup
	$(PY) -m flake8 mmdag tools tests
	$(PY) -m isort --check-only --diff mmdag tools tests

# the default suite: fast checks (under 15 min on 2 cores: the longest ones
# are marked slow and run in make test-slow)
test: setup
	$(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

# the numeric checks (attacks and target adapters) once more under another
# floating-point configuration: one thread, ATen's scalar kernels instead of
# its vectorised ones, torch's own convolutions instead of oneDNN's. Sums
# are then taken in another order, so a check whose tolerance sits inside
# float noise fails here (CI runs it) before it fails on a user's CPU.
# The checks it runs are those that compare floating-point results: the
# attacks against their authors' code, finite differences and tolerances,
# and the targets whose figures must not depend on the batch. (The other
# target checks compare no number within a tolerance, and the zoo detectors'
# "the attack lowers Eq. (1)" checks take minutes without oneDNN: left out.)
NUMERIC_TESTS ?= tests/test_attacks tests/test_targets/test_batching.py \
	tests/test_targets/test_segmentation.py
test-numerics: setup
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default MMDAG_TEST_NUMERICS=alt \
		$(PY) -m pytest $(NUMERIC_TESTS) -q -m "not slow" $(PYTEST_ARGS)

# the slow end-to-end checks (demo chain, distributed, a sample of the zoo
# families): CI runs them
test-slow: setup
	$(PY) -m pytest tests -q -m "slow and not zoo" $(PYTEST_ARGS)

# the survey of every family of the installed mmseg and mmdet zoos (167
# families; with the rest of the slow checks it ran past CI's 90 minutes) and
# the C4 Faster R-CNN's attack check and the zoo benchmark's demo list end to
# end: by hand, before a release and after a
# change to the adapters or the attacks
test-zoo: setup
	$(PY) -m pytest tests -q -m zoo $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py $(DEMO_ARGS)

# the zoo benchmark on its demo list (the demo models, trained and cached by
# tools/demo.py, and a random-weight zoo FCN): Table 1, tables and pictures
benchmark-demo: setup
	$(PY) tools/demo.py --train-only
	$(PY) tools/zoo_benchmark.py configs/benchmark/demo.py $(BENCH_ARGS)

# the documentation: MkDocs (strict: any warning fails) and the docs checker
# (links and anchors; the examples marked <!-- runnable -->, run after a small demo)
docs: setup
	$(PIP) install -q -r requirements/docs.txt $(PINNED)
	$(VENV)/bin/mkdocs build --strict
	$(PY) tools/check_docs.py --links --run

# The oldest supported stack (requirements/oldest.txt: Python 3.10, torch 2.1.2,
# mmcv 2.1.0 built from source, mmengine 0.10.4, mmdet 3.3.0, mmseg 1.2.2), in
# its own venv, installed the way a user with that stack installs mmdag:
# `pip install .` with its ranges, which must leave the stack as it was
# (tools/check_stack_kept.py). The fast suite then runs there.
OLD_PYTHON ?= python3.10
OLD_VENV   ?= .venv-oldest
OLD_PY     := $(OLD_VENV)/bin/python
OLD_PIP    := $(OLD_PY) -m pip
OLD_STAMP  := $(OLD_VENV)/.mmdag-installed
OLDEST     := -c requirements/oldest.txt

setup-oldest: $(OLD_STAMP)

$(OLD_STAMP): requirements/oldest.txt requirements/runtime.txt requirements/oracles.txt setup.py
	@# a pyenv-installed 3.10 is found even when another Python is pyenv's default
	@test -x $(OLD_PY) || { echo "[oldest] creating $(OLD_VENV) with $(OLD_PYTHON)"; \
		PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep '^3\.10' | tail -1) \
		$(OLD_PYTHON) -m venv $(OLD_VENV) || { echo "[oldest] needs Python 3.10: install it (pyenv install 3.10) or pass OLD_PYTHON=/path/to/python3.10"; exit 1; }; }
	@echo "[oldest] the user's stack: torch 2.1.2, numpy 1, setuptools < 70"
	$(OLD_PIP) install -q torch numpy setuptools wheel ninja $(OLDEST) $(TORCH_SOURCE)
	@if $(OLD_PY) -c "import mmcv, mmcv.ops" 2>/dev/null; then \
		echo "[oldest] mmcv with ops already installed"; \
	else \
		echo "[oldest] building mmcv 2.1.0 with ops against torch 2.1.2 (about 12 min on 2 cores)"; \
		MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-2} $(OLD_PIP) install --no-cache-dir --no-build-isolation mmcv $(OLDEST) || exit 1; \
	fi
	$(OLD_PIP) install -q mmengine mmdet mmsegmentation ftfy regex pytest $(OLDEST)
	@echo "[oldest] pip install . (mmdag's ranges) must keep that stack"
	$(OLD_PY) tools/check_stack_kept.py save $(OLD_VENV)/stack-before.json
	$(OLD_PIP) install -q .
	$(OLD_PY) tools/check_stack_kept.py compare $(OLD_VENV)/stack-before.json
	@echo "[oldest] mmdag editable for the tests"
	$(OLD_PIP) install -q --no-deps --no-build-isolation -e .
	$(OLD_PIP) install -q --no-deps -r requirements/oracles.txt
	@$(OLD_PY) -c "import torch, mmcv.ops, mmdet, mmseg, mmdag; print('[oldest] ok: torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmdag', mmdag.__version__)"
	@touch $(OLD_STAMP)

# the fast suite on the oldest supported stack
test-oldest: setup-oldest
	$(OLD_PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)
