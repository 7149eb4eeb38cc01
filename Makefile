# cifar_lightning: make targets. `make` alone lists them.
PYTHON ?= .venv/bin/python
MODEL ?= model7b
ARGS ?=
EPOCHS ?=
SEEDS ?= 0
# The study's models and the ladder's rungs, read from the one table of them (after `install`, in the recipes).
TABLES = cifar_lightning/tools/tables.yaml
configs_of = $(shell $(PYTHON) -c "import yaml; t = yaml.safe_load(open('$(TABLES)')); \
  print(*dict.fromkeys(f'configs/{name}.yaml' for name in $(1)))")
STUDY_CONFIGS ?= $(call configs_of,t['study'])
LADDER_CONFIGS ?= $(call configs_of,(r['config'] for r in t['ladder']))
LADDER_TTA_CONFIGS ?= $(call configs_of,(r['config'] for r in t['ladder'] if r['tta']))
LADDER_SEEDS ?= 0 1 2

.DEFAULT_GOAL := help
.PHONY: help install test test-full test-gpu lint format try fit evaluate study ladder report bench tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: MODEL=$(MODEL) (a config in configs/), ARGS='extra fit arguments', EPOCHS=N (caps study epochs), SEEDS='0 1 2'"

install: .venv/.installed  ## create .venv and install the package with its dev tools and every extra the tests use

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --upgrade pip
	.venv/bin/pip install -e '.[dev]'
	touch $@

test: install  ## the fast tier: unit tests and short command-line runs (a few minutes on two cores)
	$(PYTHON) -m pytest -q -m "not slow and not gpu"

test-full: install  ## every test that needs no GPU, one worker per core; what CI runs (CIFAR10_DIR=folder of a real cifar10.npz adds the real-data test)
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -m "not gpu" -n auto --dist loadgroup

test-gpu: install  ## the tests that need a CUDA GPU (benchmarks/gpu.sh runs them first)
	$(PYTHON) -m pytest -q -m gpu

lint: install  ## ruff check and format check
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: install  ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

try: install  ## the whole loop in a few minutes on a laptop CPU: model1 for 3 short epochs, its test, the report
	$(PYTHON) -m cifar_lightning fit --config configs/model1.yaml --trainer.max_epochs 3 --trainer.limit_train_batches 1000 --trainer.logger.init_args.name try $(ARGS)
	$(PYTHON) -m cifar_lightning test --config configs/model1.yaml --trainer.logger.init_args.name try $(ARGS)
	$(PYTHON) -m cifar_lightning report
	@echo "dashboards: make tensorboard, then open http://localhost:6006"

fit: install  ## train MODEL (default model7b), e.g. make fit MODEL=model4 ARGS='--trainer.max_epochs 5'
	$(PYTHON) -m cifar_lightning fit --config configs/$(MODEL).yaml $(ARGS)

evaluate: install  ## test MODEL's best checkpoint on the 10,000 test images
	$(PYTHON) -m cifar_lightning test --config configs/$(MODEL).yaml --ckpt_path best $(ARGS)

study: install  ## fit and test every config with every seed, then write reports/ (SEEDS="0 1 2", EPOCHS=1 for a quick pass); run again to continue a stopped study
	$(PYTHON) -m cifar_lightning study --configs $(STUDY_CONFIGS) --seeds $(SEEDS)$(if $(EPOCHS), --epochs $(EPOCHS)) --args='$(ARGS)'
	$(PYTHON) -m cifar_lightning report

ladder: install  ## the ablation ladder (model4, +augmentation and schedule, +EMA, +cutout, +TTA) over LADDER_SEEDS; EPOCHS=N caps each run
	$(PYTHON) -m cifar_lightning study --configs $(LADDER_CONFIGS) --seeds $(LADDER_SEEDS)$(if $(EPOCHS), --epochs $(EPOCHS)) --args='$(ARGS)'
	for config in $(LADDER_TTA_CONFIGS); do for seed in $(LADDER_SEEDS); do $(PYTHON) -m cifar_lightning test \
	  --config $$config --seed_everything $$seed --model.tta true$(if $(EPOCHS), --trainer.max_epochs $(EPOCHS)) $(ARGS) \
	  || exit 1; done; done
	$(PYTHON) -m cifar_lightning report

report: install  ## write reports/ (tables, curves, samples) from the runs under lightning_logs/
	$(PYTHON) -m cifar_lightning report

bench: install  ## throughput table: Lightning vs a plain loop, data path vs torchvision (see BENCHMARKS.md)
	$(PYTHON) benchmarks/bench.py --data.data_dir data

tensorboard: install  ## serve the dashboards of every run under lightning_logs/
	.venv/bin/tensorboard --logdir lightning_logs

clean:  ## remove runs, reports and caches (keeps .venv and data/)
	find lightning_logs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf reports .pytest_cache .ruff_cache predictions.csv
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} +
