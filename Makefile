# The two commands a newcomer needs (see README.md):
#   make demo   set up, record the broken-pipe scenario, explain it, plot it
#   make test   set up, run the test suite
PY := .venv/bin/python
SCENARIO ?= broken-pipe

.PHONY: setup demo test bench captures

setup:
	@scripts/setup.sh

demo: setup
	@mkdir -p out
	$(PY) -m tcpteardown run $(SCENARIO) -o out/$(SCENARIO).pcapng
	$(PY) -m tcpteardown explain out/$(SCENARIO).pcapng --lang go
	$(PY) -m tcpteardown plot out/$(SCENARIO).pcapng --lang go -o out/$(SCENARIO).png

# Two workers, each taking whole files (--dist loadfile): a file's module fixtures
# (the notebook runners, a watch run, a JupyterLab) start once. Tests do not share
# state: ports are the kernel's ephemeral ones, namespaces and tracefs instances
# are named by pid, captures filter on their own ports. `pytest FILE` runs serially.
test: setup
	$(PY) -m pytest -n 2 --dist loadfile

captures: setup
	$(PY) -m tcpteardown.scenarios.refresh captures/linux
