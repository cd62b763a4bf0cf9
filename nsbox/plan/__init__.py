"""The lab as an ordered plan of steps: what a person would type, and what nsbox sends.

One plan drives the build (kernel/realize.py applies it), fault injection
(NSBOX_FAULT_AFTER_STEPS counts its steps), error messages (a failing step
names its `ip` text), `nsbox explain` (the plan as a bash script) and, from
the same model, `nsbox show`.
"""

from nsbox.plan.steps import Firewall, IPSets, Netlink, Netns, Plan, Step, Sysctl, plan_lab

__all__ = ["Firewall", "IPSets", "Netlink", "Netns", "Plan", "Step", "Sysctl", "plan_lab"]
