"""One exception type per kind of failure; the CLI maps each to an exit code."""


class NsboxError(Exception):
    """Base class. str(err) is a one-line message for the user."""

    exit_code = 1


class UsageError(NsboxError):
    """Bad command line, unknown recipe, bad --set value (exit 2)."""

    exit_code = 2


class ValidationError(UsageError):
    """The lab model is inconsistent; found before the kernel is touched (exit 2)."""


class RecipeError(UsageError):
    """A recipe file failed to load or to build its model (exit 2)."""


class KernelError(NsboxError):
    """The kernel refused an operation while realizing a lab (exit 1)."""


class SandboxError(NsboxError):
    """The sandbox could not be entered, e.g. user namespaces are disabled (exit 1)."""


class Skip(Exception):
    """The recipe cannot run here: a kernel feature or tool is missing. str(err) is the reason."""
