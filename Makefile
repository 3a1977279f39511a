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

test: setup
	$(PY) -m pytest

captures: setup
	$(PY) -m tcpteardown.scenarios.refresh captures/linux
