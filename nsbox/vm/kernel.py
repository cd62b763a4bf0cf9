"""What `--kernel KERNEL` names, resolved before anything boots.

KERNEL is one of:
  host            the running kernel, no VM (the matrix's baseline)
  PATH            a bzImage (checked by its boot-protocol magic)
  DIR             a kernel build tree (DIR/arch/x86/boot/bzImage; virtme-ng takes its modules
                  from the tree)
  VERSION         an installed kernel: /boot/vmlinuz-VERSION (modules from /lib/modules/VERSION)
Anything else is a UsageError: one line, exit 2, nothing booted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nsbox.errors import UsageError

HOST = "host"
BOOT_DIR = Path("/boot")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")
# x86 boot protocol (Documentation/arch/x86/boot.rst): "HdrS" at 0x202, and at 0x20e the
# offset (minus 0x200) of the kernel's version string, whose first word is its release.
_MAGIC_AT, _MAGIC = 0x202, b"HdrS"
_VERSION_PTR_AT = 0x20E


@dataclass(frozen=True)
class Kernel:
    """A kernel to run recipes on.

    spec     what the user wrote
    label    how reports name it (the release, or `host`)
    image    what virtme-ng boots (a bzImage, or a build tree); None for the host
    release  the kernel's release (uname -r), "" when the image does not say
    """

    spec: str
    label: str
    image: str | None
    release: str

    @property
    def is_host(self) -> bool:
        return self.image is None

    @property
    def bzimage(self) -> str | None:
        """The bzImage file itself (for the KVM trial boot)."""
        if self.image is None:
            return None
        return os.path.join(self.image, "arch/x86/boot/bzImage") if os.path.isdir(self.image) else self.image


def resolve(spec: str) -> Kernel:
    """The Kernel SPEC names, or a UsageError saying why not."""
    if spec == HOST:
        return Kernel(spec, HOST, None, os.uname().release)
    if not spec or any(ord(c) < 32 for c in spec):
        raise UsageError(f"--kernel {spec!r}: not a kernel (a bzImage, a version under /boot, a build tree, or host)")
    if "/" in spec or os.path.exists(spec):
        return _from_path(spec)
    if not _VERSION.fullmatch(spec):
        raise UsageError(f"--kernel {spec!r}: not a kernel version, nor a file or directory")
    image = BOOT_DIR / f"vmlinuz-{spec}"
    if not image.is_file():
        installed = sorted(p.name[len("vmlinuz-"):] for p in BOOT_DIR.glob("vmlinuz-*"))
        raise UsageError(f"--kernel {spec}: no such kernel ({image} does not exist; installed: "
                         f"{', '.join(installed) or 'none'})")
    return Kernel(spec, spec, _readable_bzimage(str(image), spec), spec)


def _from_path(spec: str) -> Kernel:
    path = os.path.abspath(spec)
    if os.path.isdir(path):
        bz = os.path.join(path, "arch/x86/boot/bzImage")
        if not os.path.isfile(bz):
            raise UsageError(f"--kernel {spec}: not a kernel build tree (no arch/x86/boot/bzImage; "
                             f"build it with make bzImage, or give the image itself)")
        release = _release(_readable_bzimage(bz, spec))
        return Kernel(spec, release or path, path, release)
    if not os.path.isfile(path):
        raise UsageError(f"--kernel {spec}: no such file or directory")
    _readable_bzimage(path, spec)
    release = _release(path)
    return Kernel(spec, release or os.path.basename(path), path, release)


def _readable_bzimage(path: str, spec: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(0x210)
    except OSError as e:
        raise UsageError(f"--kernel {spec}: cannot read {path}: {e.strerror}") from None
    if head[_MAGIC_AT:_MAGIC_AT + 4] != _MAGIC:
        raise UsageError(f"--kernel {spec}: {path} is not an x86 kernel image (bzImage)")
    return path


def _release(path: str) -> str:
    """The release the bzImage's header names ("6.1.0-57-amd64"), or ""."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x210)
            offset = int.from_bytes(head[_VERSION_PTR_AT:_VERSION_PTR_AT + 2], "little")
            if not offset:
                return ""
            f.seek(offset + 0x200)
            text = f.read(256).split(b"\0")[0].decode("ascii", "replace")
    except OSError:
        return ""
    word = text.split()[0] if text.split() else ""
    return word if _VERSION.fullmatch(word) else ""


def resolve_all(specs: tuple[str, ...]) -> list[Kernel]:
    """Every --kernel, resolved; the same kernel twice is a usage error (its column would repeat)."""
    kernels = [resolve(s) for s in specs]
    seen: dict[str, str] = {}
    for k in kernels:
        key = k.image or HOST
        if key in seen:
            raise UsageError(f"--kernel {k.spec}: the same kernel as --kernel {seen[key]}")
        seen[key] = k.spec
    labels = [k.label for k in kernels]
    # two images of one release (a tree and its installed copy): tell them apart by what was given
    return [k if labels.count(k.label) == 1 else Kernel(k.spec, k.spec, k.image, k.release) for k in kernels]
