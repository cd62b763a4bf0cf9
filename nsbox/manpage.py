"""nsbox(1), generated from the command line itself (click's commands, arguments,
options and help texts), so the man page cannot drift from `nsbox --help`:

    python -m nsbox.manpage > docs/man/nsbox.1

tests/unit/test_unit_completion.py fails when the shipped page differs from what this
prints (re-run the command above after changing an option or a help text).
"""

from __future__ import annotations

import sys

import click

from nsbox import __version__

_SEE = "ip(8), ip-netns(8), iptables(8), nft(8), conntrack(8), unshare(1)"


def roff(text: str) -> str:
    """TEXT safe as roff body text: backslashes and hyphens escaped, no line that
    starts with a control character ('.' or "'")."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.splitlines())


def _paragraphs(text: str) -> list[str]:
    """Help text as paragraphs of one line each (click's \\b blocks kept as lines)."""
    out = []
    for block in (text or "").split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if lines and lines[0] == "\b":
            out.append("\n.br\n".join(roff(x) for x in lines[1:]))
        elif lines:
            out.append(roff(" ".join(lines)))
    return out


def _option(ctx: click.Context, p: click.Parameter) -> list[str]:
    if not isinstance(p, click.Option):   # arguments are in the usage line
        return []
    record = p.get_help_record(ctx)
    if record is None:
        return []
    names, help_ = record
    return [".TP", f"\\fB{roff(names)}\\fR", roff(" ".join(help_.split())) or "."]


def page(cli: click.Group) -> str:
    ctx = click.Context(cli, info_name="nsbox", **cli.context_settings)
    out = [f'.TH NSBOX 1 "" "nsbox {roff(__version__)}" "User Commands"', ".SH NAME",
           "nsbox \\- " + roff(_first_line(cli.help)), ".SH SYNOPSIS",
           "\\fBnsbox\\fR [\\fB\\-\\-version\\fR] [\\fB\\-h\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
           ".SH DESCRIPTION"]
    for para in _paragraphs(cli.help or ""):
        out += [".PP", para]
    out += [".SH OPTIONS"]
    for p in cli.get_params(ctx):
        out += _option(ctx, p)
    out += [".SH COMMANDS"]
    for name in sorted(cli.list_commands(ctx)):
        cmd = cli.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
        usage = " ".join(cmd.collect_usage_pieces(sub))
        out += [f'.SS "nsbox {roff(name)} {roff(usage)}"']
        for para in _paragraphs(cmd.help or ""):
            out += [".PP", para]
        for p in cmd.get_params(sub):
            out += _option(sub, p)
    out += [".SH SHELL COMPLETION", "Commands, options and recipe names complete in bash and zsh:",
            ".PP", ".nf", roff('eval "$(_NSBOX_COMPLETE=bash_source nsbox)"   # ~/.bashrc'),
            roff('eval "$(_NSBOX_COMPLETE=zsh_source nsbox)"    # ~/.zshrc'), ".fi",
            ".SH EXIT STATUS", "0 every recipe passed; 1 a check failed (or the kernel refused a step); "
            "2 bad usage or input (one line on stderr, nothing built); 4 everything was skipped; "
            "128+N ended by signal N (130 for Ctrl\\-C, 143 for SIGTERM).",
            ".SH SEE ALSO", roff(_SEE), ""]
    return "\n".join(out)


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split()).rstrip(".")


def main() -> None:
    from nsbox.cli import main as cli

    sys.stdout.write(page(cli))


if __name__ == "__main__":
    main()
