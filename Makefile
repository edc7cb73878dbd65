# opensuse-gpu-stack: one entry point for humans and CI.
#   make demo   build the sandbox, converge site.yml into it, validate, print the verdict and reports
#   make test   lint, unit tests, sandbox converge x2 (changed=0), testinfra, the package's Keras tests in the
#               host's ML venv, fault scenarios
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

ROOT      := $(CURDIR)
VENV      ?= $(ROOT)/.venv
PY        := $(VENV)/bin/python
CACHE     := $(ROOT)/.cache
LOGS      := $(CACHE)/logs
RESULTS   := $(CACHE)/test-results
SANDBOXCTL := $(PY) $(ROOT)/sandbox/sandboxctl.py
# The platform matrix: one sandbox host per claimed platform (sandbox/stubs/facts.yml). make test
# converges site.yml into all of them; make demo into HOST only; make lab uses lab-1..N.
PLATFORMS := leap156 leap160 tumbleweed sles15 sles16
MATRIX    := $(addsuffix -1,$(PLATFORMS))
HOST      ?= leap156-1
HOSTS     ?= $(MATRIX)
# The ML virtualenv inside a sandbox host (gpu_stack_venv_path of pins.yml)
HOST_VENV ?= /opt/gpu-stack/venv
N         ?= 4
# How many make test jobs run at once: the cores (the scenarios: at most 8 test files at once, each brings up
# its own hosts; pytest-xdist keeps a file's module fixtures on one worker)
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
INTEGRATION_JOBS ?= $(shell n=$(JOBS); echo $$(( n < 8 ? n : 8 )))
empty     :=
comma     := ,
LIMIT      = $(subst $(empty) $(empty),$(comma),$(strip $(HOSTS)))
# Hosts the Keras/TensorFlow tests run in: TensorFlow on the system CUDA (Leap 15.6) and on its pip wheels (Leap 16)
VENV_TEST_HOSTS := leap156-1 leap160-1
# Fresh hosts for the check-mode run on every platform (taken down again at once)
CHECK_HOSTS := $(addprefix check-,$(PLATFORMS))
# Ansible must not inherit the controller's environment (a stray GNUPGHOME broke key import in the chroot)
ANSIBLE_ENV := env -i PATH=$(VENV)/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$(HOME) LANG=C.UTF-8 \
	ANSIBLE_CONFIG=$(ROOT)/ansible.cfg ANSIBLE_NOCOLOR=1
PLAYBOOK  := $(ANSIBLE_ENV) $(VENV)/bin/ansible-playbook
HOST_ROOT  = $$($(SANDBOXCTL) root $(HOST))
PYTEST    := $(ANSIBLE_ENV) $(VENV)/bin/pytest

# Debian packages the sandbox build needs on the controller (apt-get names)
HOST_PACKAGES := debootstrap rpm createrepo-c gnupg xz-utils bzip2 gcc libc6-dev vagrant vagrant-libvirt
HOST_COMMANDS := debootstrap rpmbuild rpmsign createrepo_c gpg xz gcc vagrant

.PHONY: help venv host-packages lint collection readme remove unit sandbox wheelhouse converge snapshot idempotence check-mode \
	verify venv-tests integration test test-lint demo lab vm-test vagrant-validate device-wheels sandbox-clean clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Controller virtualenv from requirements.txt
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip==25.3
	@# No bytecode up front: the ansible package's ~18,000 modules (its collections) take pip most of its time, and
	@# Python writes the .pyc of the few that are imported on first use
	$(VENV)/bin/pip install --quiet --no-compile -r requirements.txt
	touch $@

host-packages: ## Install what the sandbox build needs (Debian: apt-get; openSUSE: zypper)
	@missing=""; for c in $(HOST_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "host-packages: missing:$$missing"; \
	if [ "$$(id -u)" != 0 ]; then echo "host-packages: run as root to install them" >&2; exit 2; fi; \
	if command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(HOST_PACKAGES) >/dev/null; \
	elif command -v zypper >/dev/null; then \
		zypper --non-interactive install debootstrap rpm-build createrepo_c gpg2 xz gcc; \
	else echo "host-packages: install$$missing by hand" >&2; exit 2; fi

lint: venv ## yamllint, ansible-lint, ruff, syntax check
	@# the files git sees: a walk of . would descend into .cache (sandbox roots with /proc and /sys mounted)
	cd $(ROOT) && git ls-files -z --cached --others --exclude-standard -- '*.yml' '*.yaml' .yamllint \
		| xargs -0 $(VENV)/bin/yamllint --strict
	cd $(ROOT) && $(ANSIBLE_ENV) $(VENV)/bin/ansible-lint
	cd $(ROOT) && $(VENV)/bin/ruff check .
	cd $(ROOT) && $(PLAYBOOK) -i inventory/hosts.example.yml --syntax-check site.yml playbooks/*.yml
	$(PY) tools/render_role_vars.py --check
	$(MAKE) --no-print-directory collection

# The collection as a user installs it: built, installed into a collections path of its own (nothing of the
# checkout: no ansible.cfg, no collections/ link), linted there, and the execution environment's build context
COLLECTION_VERSION := $(shell sed -n 's/^version: *//p' $(ROOT)/galaxy.yml)
COLLECTION_TARBALL := $(CACHE)/collection/gpu_stack-opensuse-$(COLLECTION_VERSION).tar.gz
COLLECTION_INSTALLED := $(CACHE)/collection/installed
COLLECTION_ENV := env -i PATH=$(VENV)/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$(HOME) LANG=C.UTF-8 ANSIBLE_NOCOLOR=1 \
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTION_INSTALLED)
collection: venv ## Build the collection, install it into .cache/collection/installed, lint it there, EE context
	rm -rf $(CACHE)/collection $(CACHE)/ee-context
	cd $(ROOT) && $(COLLECTION_ENV) $(VENV)/bin/ansible-galaxy collection build --output-path $(CACHE)/collection
	cd $(CACHE)/collection && $(COLLECTION_ENV) $(VENV)/bin/ansible-galaxy collection install $(COLLECTION_TARBALL) \
		-p $(COLLECTION_INSTALLED)
	cd $(COLLECTION_INSTALLED)/ansible_collections/gpu_stack/opensuse && $(COLLECTION_ENV) $(VENV)/bin/ansible-lint
	cd $(ROOT) && $(VENV)/bin/ansible-builder create --file execution-environment.yml --context $(CACHE)/ee-context
	@# what ansible-builder will install for the collection in the image (its meta/execution-environment.yml)
	$(PY) $(CACHE)/ee-context/_build/scripts/introspect.py introspect $(COLLECTION_INSTALLED) \
		> $(CACHE)/collection/introspect.txt
	grep -q '^- .flit-core==' $(CACHE)/collection/introspect.txt

readme: venv ## Regenerate the README's role-variable table from the argument specs
	$(PY) tools/render_role_vars.py

unit: venv ## Unit tests (no sandbox)
	@mkdir -p $(RESULTS)
	$(PYTEST) tests/unit -q --junitxml=$(RESULTS)/unit.xml

sandbox: venv host-packages ## Build (or reuse) the sandbox: stub repos, suite bases, one layer per platform
	$(SANDBOXCTL) build

wheelhouse: $(CACHE)/wheelhouse/wheelhouse.json ## Download the ML venv's pinned wheels (Python 3.11 and 3.13, +CUDA wheels)
# Downloaded again only when the pins change (pip keeps the files it already has)
$(CACHE)/wheelhouse/wheelhouse.json: $(VENV)/.installed tools/wheelhouse.py roles/ml_venv/vars/main.yml \
		pins.yml
	$(PY) tools/wheelhouse.py --out $(CACHE)/wheelhouse

converge: sandbox wheelhouse ## Converge site.yml into a fresh host of each platform (HOSTS, default the matrix)
	@mkdir -p $(LOGS)
	@# Unchanged roles, inventory, wheelhouse and layers: the snapshot of the last converge is that converge
	@if [ -z "$(FRESH)" ] && $(PY) tests/converge_cache.py restore $(HOSTS); then \
		echo "converge: restored from the snapshots of the last converge with these inputs (FRESH=1 converges anew)" \
			| tee $(LOGS)/converge-1.log; \
	else \
		for h in $(HOSTS); do $(SANDBOXCTL) reset $$h >/dev/null; done; \
		$(PLAYBOOK) -i inventory/sandbox.yml --limit $(LIMIT) site.yml 2>&1 | tee $(LOGS)/converge-1.log; \
	fi

snapshot: ## Keep the converged hosts as snapshots (converged-<host>) for the scenarios and the next run
	$(PY) tests/converge_cache.py save $(HOSTS)

idempotence: ## Converge again; fail unless changed=0
	@mkdir -p $(LOGS)
	$(PLAYBOOK) -i inventory/sandbox.yml --limit $(LIMIT) site.yml 2>&1 | tee $(LOGS)/converge-2.log
	$(PY) tests/check_recap.py --expect-unchanged $(LOGS)/converge-2.log

check-mode: ## --check --diff: changed=0 on the converged hosts, no failure on a fresh host of every platform
	$(PLAYBOOK) -i inventory/sandbox.yml --limit $(LIMIT) --check --diff playbooks/provision.yml 2>&1 \
		| tee $(LOGS)/check-mode.log
	$(PY) tests/check_recap.py --expect-unchanged $(LOGS)/check-mode.log
	@for p in $(PLATFORMS); do $(SANDBOXCTL) reset check-$$p --platform $$p >/dev/null; done
	@status=0; $(PLAYBOOK) -i inventory/sandbox.yml --limit 'check-*' --check --diff site.yml \
		> $(LOGS)/check-mode-fresh.log 2>&1 && $(PY) tests/check_recap.py $(LOGS)/check-mode-fresh.log \
		|| status=$$?; $(SANDBOXCTL) down $(CHECK_HOSTS) >/dev/null; \
		if [ $$status != 0 ]; then tail -n 60 $(LOGS)/check-mode-fresh.log; fi; exit $$status

verify: ## testinfra suite against each converged sandbox host (JOBS hosts at once)
	@mkdir -p $(RESULTS)
	@$(SUBMAKE) -k -j$(JOBS) --output-sync=target $(HOSTS:%=verify-host-%)
verify-host-%:
	@echo "verify: $*"
	@$(PYTEST) validation/tests -q -p no:cacheprovider --connection=chroot --hosts=$$($(SANDBOXCTL) root $*) \
		-m 'not gpu' --junitxml=$(RESULTS)/testinfra-$*.xml

# The validation package's real Keras/TensorFlow runs need TensorFlow: they run in the converged host's ML
# virtualenv (where the gpu_validation role installed the package), inside the host
venv-tests: ## The package's Keras/TensorFlow tests in the ML virtualenv of a system-CUDA and a pip-CUDA host
	@mkdir -p $(RESULTS)
	@$(SUBMAKE) -k -j$(JOBS) --output-sync=target $(patsubst %,venv-tests-host-%,$(filter $(VENV_TEST_HOSTS),$(HOSTS)))
venv-tests-host-%:
	@root=$$($(SANDBOXCTL) root $*); echo "venv-tests: $*"; \
	rm -rf $$root/tmp/gpu-stack-venv-tests && mkdir -p $$root/tmp/gpu-stack-venv-tests; \
	cp $(ROOT)/tests/venv/*.py $$root/tmp/gpu-stack-venv-tests/; \
	status=0; chroot $$root env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		$(HOST_VENV)/bin/python -m pytest -q -p no:cacheprovider /tmp/gpu-stack-venv-tests \
		--junitxml=/tmp/gpu-stack-venv-tests/venv.xml || status=$$?; \
	cp $$root/tmp/gpu-stack-venv-tests/venv.xml $(RESULTS)/venv-$*.xml 2>/dev/null || true; \
	rm -rf $$root/tmp/gpu-stack-venv-tests; exit $$status

integration: ## Fault scenarios and removal, each on fresh sandbox hosts (INTEGRATION_JOBS test files at once)
	@mkdir -p $(RESULTS)
	$(PYTEST) tests/integration -q -p no:cacheprovider -n $(INTEGRATION_JOBS) --dist loadfile \
		--junitxml=$(RESULTS)/integration.xml

# A stage that passed with exactly these inputs (the whole working tree, the wheelhouse, the stub repositories
# and the sandbox layers: tests/result_cache.py) is reused, not rerun; FRESH=1 reruns everything
REUSE      = RESULTS=$(RESULTS) $(PY) $(ROOT)/tests/result_cache.py run
SUBMAKE    = $(MAKE) --no-print-directory
test: venv ## Everything CI runs; ends with "N passed, N failed"
	@rm -rf $(RESULTS); mkdir -p $(RESULTS)
	@# The host is taken down even on failure: its root has /dev, /proc and /sys mounted in it. Lint and the
	@# unit tests run while the stub repositories, the bases and the wheelhouse are built and downloaded.
	@status=0; { $(SUBMAKE) -j4 --output-sync=target test-lint unit sandbox wheelhouse \
		&& $(SUBMAKE) converge \
		&& $(REUSE) idempotence --key '$(HOSTS)' -- $(SUBMAKE) idempotence \
		&& $(REUSE) check-mode --key '$(HOSTS)' -- $(SUBMAKE) check-mode \
		&& $(REUSE) verify --key '$(HOSTS)' $(HOSTS:%=--junit testinfra-%.xml) -- $(SUBMAKE) verify \
		&& $(REUSE) venv-tests --key '$(HOSTS)' $(patsubst %,--junit venv-%.xml,$(filter $(VENV_TEST_HOSTS),$(HOSTS))) \
			-- $(SUBMAKE) venv-tests \
		&& $(SUBMAKE) snapshot \
		&& $(REUSE) integration --junit integration.xml -- $(SUBMAKE) integration; } \
		|| status=$$?; \
	$(SANDBOXCTL) down $(HOSTS) $(CHECK_HOSTS) >/dev/null 2>&1 || true; \
	exit $$status
	@$(PY) tests/summary.py $(RESULTS)
# lint reads the working tree only: reused while the tree is unchanged, whatever the sandbox build does meanwhile
test-lint: venv
	@$(REUSE) lint --tree-only -- $(SUBMAKE) lint

demo: ## Build the sandbox, converge and validate one host (HOST), print the verdict and the reports
	$(MAKE) --no-print-directory converge HOSTS=$(HOST)
	@$(PY) tools/demo_summary.py --reports $(ROOT)/reports --host $(HOST)
	@echo "The sandbox host stays up for a look: sandbox/sandboxctl.py shell $(HOST); make sandbox-clean removes it."

lab: venv host-packages wheelhouse ## Converge N sandbox hosts in parallel (make lab N=4), fleet report at the end
	$(SANDBOXCTL) build
	for i in $$(seq 1 $(N)); do $(SANDBOXCTL) reset lab-$$i; done
	@mkdir -p $(LOGS)
	/usr/bin/time -f 'lab: $(N) hosts converged in %e s' \
		$(PLAYBOOK) -i inventory/sandbox.yml --limit 'lab-*' site.yml 2>&1 | tee $(LOGS)/lab-$(N).log

vagrant-validate: venv host-packages ## vagrant validate for each box/provider, CPU and GPU passthrough
	$(PYTEST) tests/integration/test_vagrantfile.py -q

vm-test: venv ## testinfra suite against the Vagrant VM (after `vagrant up`)
	vagrant ssh-config > $(CACHE)/vagrant-ssh-config
	$(PYTEST) validation/tests --hosts=default --ssh-config=$(CACHE)/vagrant-ssh-config --sudo -m 'not gpu'

device-wheels: ## Wheels the GPU device check carries (keras, namex, optree, nvidia-ml-py)
	PIP="$(VENV)/bin/pip" $(ROOT)/tests/device/fetch_wheels.sh

remove: venv ## Uninstall from $(HOST): playbooks/remove.yml (cuDNN, links, what the manifests list)
	$(PLAYBOOK) -i inventory/sandbox.yml --limit $(HOST) playbooks/remove.yml

sandbox-clean: ## Unmount and remove all sandbox hosts and caches
	$(SANDBOXCTL) clean

clean: sandbox-clean ## Also remove the controller venv and reports
	rm -rf $(VENV) $(ROOT)/reports
