"""Running recipes on another kernel: a throwaway VM (virtme-ng + QEMU) per kernel.

    kernel.py   what --kernel names: a bzImage, an installed version, a build tree, `host`
    accel.py    whether KVM works here (a quick trial boot), else QEMU's emulation (TCG)
    boot.py     boot a kernel sharing the host's root file system read-only, run a command
                as root inside, bring its files back; the VM dies with nsbox (SIGKILL too)
    guest.py    `nsbox run ... --format json` inside the VM with this very nsbox
    results.py  a RecipeResult back from its JSON
    (nsbox/report/kernels.py: per-kernel results side by side, recipe x kernel, and checks that differ)
    run.py      `nsbox run --kernel` and `nsbox doctor --kernel`
"""
