"""A directory artifacts are written into, held as an fd (nsbox/safefs.py).

Every file is created new inside it (O_CREAT|O_EXCL|O_NOFOLLOW) and every
sub-folder made with mkdirat and opened with O_NOFOLLOW: nothing is ever opened
for writing by a path someone else could have changed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from nsbox import safefs


@dataclass
class Folder:
    fd: int    # O_PATH fd of the directory
    path: str  # its path, for what the report shows

    def join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def sub(self, name: str, *, fresh: bool = False) -> "Folder":
        """The sub-folder NAME, made if missing (FRESH: it must not exist yet)."""
        try:
            os.mkdir(name, 0o777, dir_fd=self.fd)
        except FileExistsError:
            if fresh:
                raise
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        return Folder(fd, self.join(name))

    def create(self, name: str, *, read_back: bool = False) -> BinaryIO:
        """A new file NAME, open for writing (and reading with READ_BACK)."""
        fd = safefs.create(self.fd, name, 0o666, readable=read_back)
        return os.fdopen(fd, "w+b" if read_back else "wb")

    def close(self) -> None:
        os.close(self.fd)
