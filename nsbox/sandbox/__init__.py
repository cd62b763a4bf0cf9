"""The sandbox: a fresh user + mount + pid + network namespace for each run.

`nsbox run` forks itself into the namespaces before any thread exists
(unshare(CLONE_NEWUSER) fails in a multi-threaded process; enter.fork_into); a
live lab's holder is started under util-linux `unshare` (enter.inner_command). The
inner nsbox is pid 1 of the new pid namespace with a private tmpfs on /run, so
when it exits, or its parent is SIGKILLed (--kill-child), the kernel destroys
every namespace, link, rule, conntrack entry and process of the lab.

Recipe code runs only in places that cannot reach the host's network: inside
the sandbox, or (for --on-host and `nsbox list`) in a jail process (jail.py).
"""

from nsbox.sandbox.enter import claim_from_environment, fork_into, inside, preflight, setup_inside

__all__ = ["claim_from_environment", "fork_into", "inside", "preflight", "setup_inside"]
