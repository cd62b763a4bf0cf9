"""The test harness: what the tests share, kept apart from the tests themselves.

The suite is in three parts:

- tests/unit/ (`test_unit_*.py`): no root, no kernel; the model, validation, the kits'
  rule text, the formats, the CLI's argument handling. `pytest -m "not kernel"` runs them.
- tests/kernel/ (`test_kernel_*.py`, marked `kernel`): build real labs as root and check
  them with independent observers; each is watched by the host guard below.
- tests/support/ (this package): the harness, imported as `tests.support.NAME`
  (pyproject's `pythonpath = ["."]` puts the checkout on sys.path). tests/conftest.py only
  holds the hooks and fixtures that hand these out.

Modules:

- paths: REPO, TESTS, DATA (tests/data), OBSERVERS: every file a test reads is named from here.
- procs: the test process's descendants (a leak check), subreaping, `wait_until`.
- foreign: other users' on-host labs, which a test neither judges nor cleans.
- host: `HostSnapshot` / `HostGuard`, the real host before and after a kernel test.
- runner: `Nsbox` runs this checkout's nsbox as the user would; `in_private_run` runs a
  script in a mount namespace with a /run of its own; `shipped_recipe_import` (mutants).
- kernel: IS_ROOT / NEEDS_ROOT and `Kernel`, the `kernel` fixture's toolbox.
- dumps: `dump_sections`, reading an observer's `@@ NAME` sections.
- cmd: running a host command to observe, and `describe` for a failure message.
- mutants: `run_mutant` (a shipped recipe with one piece taken away) and `failed_checks`.
- explain_harness: a lab's explain script in a throwaway user+net namespace, so the
  kernel says what it accepts and refuses (routing and CNI-model tests).
- checkout: a world-readable copy of nsbox/ and recipes/ for the uid-65534 tests.
- scratch: `in_netns`, a scratch network namespace to load rules into.
- golden: Docker 29's iptables-save goldens (tests/data/docker29) and `parse_save`.
- saves: `tables_in_order`, iptables-save text read table by table.
- mermaid: a Mermaid flowchart reader (the grammar subset `nsbox show` writes).
- ktap_parser: an independent KTAP reader (from the kernel's ktap.rst) for the ktap format.
- netpol_lab: the NetworkPolicy kernel tests' kube-router node and pod-pair probes.
- realdocker/: the real dockerd 20.10 in a throwaway namespace, its scenarios and the
  normaliser its dumps and nsbox's share.
- realcni/: the real CNI plugins beside nsbox's model of them, dumped by one script.
- observers/: shell and Python observers run inside a live lab with `--then`.
"""
