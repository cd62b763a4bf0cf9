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


class InstallError(NsboxError):
    """nsbox's own installation is broken: a library that does not load, a missing
    program (exit 2). Never reported as a missing kernel feature. str(err) names
    what is missing and the fix."""

    exit_code = 2


REINSTALL = "or re-run ./install.sh from the nsbox checkout"

# Python packages nsbox imports -> the pip package that provides them.
PYTHON_PACKAGES = {"pyroute2": "pyroute2", "iptc": "python-iptables", "click": "click", "rich": "rich",
                   "dnslib": "dnslib", "yaml": "PyYAML"}


def missing_module(e: ImportError) -> InstallError | None:
    """An InstallError for an ImportError of one of nsbox's dependencies (None for anything else,
    e.g. a recipe importing a module of its own, which is the recipe's problem)."""
    top = (e.name or "").split(".")[0]
    if top not in PYTHON_PACKAGES:
        return None
    pip = PYTHON_PACKAGES[top]
    return InstallError(f"the Python package {pip} is not installed for {_python()} "
                        f"({type(e).__name__}: {' '.join(str(e).split())}); "
                        f"install it with: {_python()} -m pip install {pip}, {REINSTALL}")


def _python() -> str:
    import sys
    return sys.executable or "python3"
