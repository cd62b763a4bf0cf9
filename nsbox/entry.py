"""The `nsbox` command's first code.

Signal handlers come before any other import (see nsbox.signals); then the
command line. Whatever ends the run -- a signal, a missing library, a bug --
ends it with a one-line message and an exit code, never click's "Aborted!".
`nsbox --help` and `nsbox list` are answered by nsbox.fastpath when it can (a few
milliseconds; no click, no sandbox): up to there nothing is imported that the interpreter
has not loaded already but nsbox.signals and nsbox.fastpath (not even `__future__`:
3.10 evaluates `X | None` by itself).
"""

import os
import sys

from nsbox import signals

signals.end_cleanly_on_signals()

# iptables' programs and python-iptables load extensions from these directories: as root
# that would run any library the caller's environment names (sudo -E, CI). Gone for every
# program nsbox starts (iptables-restore --test, doctor, artifacts), not only the run path.
for _var in ("XTABLES_LIBDIR", "IPTABLES_LIBDIR"):
    os.environ.pop(_var, None)


def main(argv: list[str] | None = None) -> None:
    try:
        signals.let_in()  # a signal that came while Python started, if a launcher held it
        _main(argv)
    except signals.Terminated as t:
        _interrupted(t)
    except BaseException as e:
        # Python wraps some exceptions (one raised in __set_name__ while a class is
        # made becomes a RuntimeError): a signal is still a signal.
        t = _terminated_in(e)
        if t is None:
            raise
        _interrupted(t)


def _terminated_in(e: BaseException | None) -> signals.Terminated | None:
    seen = 0
    while e is not None and seen < 16:
        if isinstance(e, signals.Terminated):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _interrupted(t: signals.Terminated) -> None:
    sys.stderr.write("nsbox: interrupted\n")
    sys.exit(t.exit_code)


def _main(argv: list[str] | None) -> None:
    from nsbox import fastpath

    # Starts nothing, and declines when the sandbox's markers are in the environment:
    # the claim below still comes before anything can start a child.
    served = fastpath.serve(sys.argv[1:] if argv is None else argv)
    if served is not None:
        # Done: end now, not through the interpreter's shutdown, which resets the signal
        # handlers first: a Ctrl-C in that window killed the finished run (exit -2).
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(served)  # a stream it cannot write: as before, the interpreter reports it
        os._exit(served)
    from nsbox.sandbox.enter import claim_from_environment

    claim_from_environment()  # before anything can start a child that would inherit it
    try:
        from nsbox.cli import main as cli_main
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        sys.stderr.write(f"nsbox: error: the Python package {missing!r} is missing or broken ({e}); "
                         "re-run install.sh, or: pip install nsbox\n")
        sys.exit(2)
    cli_main(args=argv, prog_name="nsbox")


if __name__ == "__main__":
    main()
