# mmdag: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv if it is missing and install the pinned stack once
# (the mmcv source build takes ~13 min the first time; pip's wheel cache makes
# later installs fast). A second run installs nothing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.mmdag-installed
REQS   := requirements/build.txt requirements/mminstall.txt requirements/runtime.txt requirements/tests.txt requirements/pinned.txt setup.py
PINNED := -c requirements/pinned.txt

.PHONY: setup demo test test-slow test-all clean-demo benchmark-demo

setup: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || { echo "[setup] creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "[setup] installing torch (pinned CPU build) and build tools"
	$(PIP) install -q -r requirements/build.txt $(PINNED)
	@if $(PY) -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then \
		echo "[setup] mmcv 2.1.0 with ops already installed"; \
	else \
		echo "[setup] building mmcv 2.1.0 with ops (about 13 min on 2 cores the first time; cached afterwards)"; \
		MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install --no-build-isolation -r requirements/mminstall.txt $(PINNED) || exit 1; \
	fi
	@echo "[setup] installing mmengine, mmdet, mmsegmentation and test tools"
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt $(PINNED)
	@echo "[setup] installing mmdag (editable)"
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@$(PY) -c "import mmcv.ops, mmdet, mmseg, mmdag; print('[setup] ok: mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmdag', mmdag.__version__)"
	@touch $(STAMP)

# the default suite: fast checks (well under 15 min on 2 cores)
test: setup
	$(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

# the slow end-to-end checks (demo chain, distributed, zoo models): CI runs both
test-slow: setup
	$(PY) -m pytest tests -q -m slow $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py $(DEMO_ARGS)

# the zoo benchmark on its demo list (the demo models, trained and cached by
# tools/demo.py, and a random-weight zoo FCN): Table 1, tables and pictures
benchmark-demo: setup
	$(PY) tools/demo.py --train-only
	$(PY) tools/zoo_benchmark.py configs/benchmark/demo.py $(BENCH_ARGS)
