"""What the kernel tests share: whether they can run here, and the `kernel` fixture's toolbox.

A kernel test file marks itself `pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not
IS_ROOT, reason=NEEDS_ROOT)]`; its tests take the `kernel` fixture (this module's `Kernel`)
for the guard, the observers and the helpers below, without importing them one by one.
"""

from __future__ import annotations

import os

from tests.support.cmd import cmd as _cmd
from tests.support.cmd import lines as _lines
from tests.support.foreign import JOURNAL_DIR, ONHOST_NETNS, foreign_labs
from tests.support.host import HostGuard, HostSnapshot, lab_conntrack_keys, normalize_iptables_save
from tests.support.paths import OBSERVERS, REPO
from tests.support.procs import descendants, pid_alive, wait_until
from tests.support.runner import Nsbox, NsboxRun, in_private_run

IS_ROOT = os.geteuid() == 0
NEEDS_ROOT = "needs root: builds network namespaces, veth pairs and iptables rules"


class Kernel:
    """What the kernel tests share, handed out by the `kernel` fixture."""

    REPO = REPO
    OBSERVERS = OBSERVERS
    ONHOST_NETNS = ONHOST_NETNS
    JOURNAL_DIR = JOURNAL_DIR
    HostGuard = HostGuard
    HostSnapshot = HostSnapshot
    foreign_labs = staticmethod(foreign_labs)
    in_private_run = staticmethod(in_private_run)
    Nsbox = Nsbox
    NsboxRun = NsboxRun

    descendants = staticmethod(descendants)
    normalize_iptables_save = staticmethod(normalize_iptables_save)
    lab_conntrack_keys = staticmethod(lab_conntrack_keys)
    pid_alive = staticmethod(pid_alive)
    wait_until = staticmethod(wait_until)

    @staticmethod
    def netns_list() -> list[str]:
        return [ln.split()[0] for ln in _lines(_cmd(["ip", "netns", "list"]))]

    @staticmethod
    def find_descendant(root: int, argv0: str) -> int | None:
        """The pid of a living descendant of ROOT whose command starts with ARGV0."""
        for pid, cmd in descendants(root).items():
            if cmd.split(" ", 1)[0] == argv0:
                return pid
        return None
