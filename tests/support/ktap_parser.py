"""A KTAP v1 parser written from the spec, not from nsbox's printer.

Grammar (torvalds/linux Documentation/dev-tools/ktap.rst, section 1):

- a test block starts with a version line `KTAP version 1` (`TAP version 13|14`
  accepted), then an optional plan `1..N`;
- result lines `<ok|not ok> <number> [<description>][ # [<directive>] [<diagnostic>]]`,
  numbered from 1 at each level; the description holds no '#';
- directives SKIP, TODO, XFAIL, TIMEOUT, ERROR (TIMEOUT and ERROR only with `not ok`);
- diagnostic lines `# text`; unknown lines are allowed and ignored;
- a subtest is a nested block indented 2 more spaces, followed by its result line
  in the parent; a failed child fails the parent, a skipped one does not.

`parse()` raises KtapError on anything the grammar forbids; `Block.unknown` keeps
the ignored lines so a test can insist there are none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERSION = re.compile(r"^(KTAP version 1|TAP version 1[34])$")
PLAN = re.compile(r"^1\.\.(\d+)(?: # (.*))?$")
RESULT = re.compile(r"^(ok|not ok) (\d+)(?: ([^#]*?))?(?: #(?: (.*))?)?$")
DIRECTIVES = ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR")
TOTALS = re.compile(r"^Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)$")


class KtapError(AssertionError):
    pass


@dataclass
class Test:
    ok: bool
    number: int
    description: str
    directive: str | None = None
    reason: str = ""             # the text after the directive, or the diagnostic after '#'
    diagnostics: list[str] = field(default_factory=list)  # '# ' lines just before the result
    subtests: Block | None = None

    @property
    def verdict(self) -> str:
        """pass, fail, skip, xfail, error, timeout or todo."""
        if self.directive in ("SKIP", "XFAIL", "TODO"):
            return self.directive.lower()
        if self.directive in ("ERROR", "TIMEOUT"):
            return "error"
        return "pass" if self.ok else "fail"


@dataclass
class Block:
    version: str
    plan: int | None = None
    tests: list[Test] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)  # every '# ' line at this level
    unknown: list[str] = field(default_factory=list)

    def leaves(self) -> list[Test]:
        out: list[Test] = []
        for t in self.tests:
            out += t.subtests.leaves() if t.subtests and t.subtests.tests else [t]
        return out

    def totals(self) -> dict[str, int] | None:
        found = [m for d in self.diagnostics if (m := TOTALS.match(d))]
        if not found:
            return None
        if len(found) > 1:
            raise KtapError("more than one Totals line")
        return dict(zip(("pass", "fail", "xfail", "xpass", "skip", "error"), map(int, found[0].groups())))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _parse_block(lines: list[str], i: int, indent: int) -> tuple[Block, int]:
    line = lines[i]
    if _indent(line) != indent or not VERSION.match(line.strip()):
        raise KtapError(f"line {i + 1}: expected a version line at indent {indent}: {line!r}")
    block = Block(version=line.strip())
    i += 1
    pending_diag: list[str] = []
    pending_sub: Block | None = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        ind, body = _indent(line), line.strip()
        if ind < indent:
            break
        if ind > indent:
            if ind == indent + 2 and VERSION.match(body):
                if pending_sub is not None:
                    raise KtapError(f"line {i + 1}: a nested block without a result line for the previous one")
                pending_sub, i = _parse_block(lines, i, ind)
                continue
            block.unknown.append(line)
            i += 1
            continue
        if m := PLAN.match(body):
            if block.plan is not None or block.tests:
                raise KtapError(f"line {i + 1}: plan after results or twice")
            block.plan = int(m.group(1))
        elif m := RESULT.match(body):
            ok, number, desc, rest = m.group(1) == "ok", int(m.group(2)), (m.group(3) or ""), (m.group(4) or "")
            if number != len(block.tests) + 1:
                raise KtapError(f"line {i + 1}: test number {number}, expected {len(block.tests) + 1}")
            word, _, after = rest.partition(" ")
            directive = word if word in DIRECTIVES else None
            if directive in ("ERROR", "TIMEOUT") and ok:
                raise KtapError(f"line {i + 1}: {directive} with ok")
            block.tests.append(Test(ok, number, desc, directive, after if directive else rest, pending_diag,
                                    pending_sub))
            pending_diag, pending_sub = [], None
        elif body == "#" or body.startswith("# "):
            text = body[2:]
            block.diagnostics.append(text)
            pending_diag.append(text)
        elif body.startswith("Bail out!"):
            raise KtapError(f"line {i + 1}: {body}")
        elif VERSION.match(body):
            break  # a sibling block at the same level (should not happen in one document)
        else:
            block.unknown.append(line)
        i += 1
    if pending_sub is not None:
        raise KtapError("a nested block at the end has no result line in its parent")
    if block.plan is not None and block.plan != len(block.tests):
        raise KtapError(f"plan 1..{block.plan} but {len(block.tests)} results")
    return block, i


def parse(text: str) -> Block:
    lines = text.splitlines()
    if not lines:
        raise KtapError("empty document")
    block, i = _parse_block(lines, 0, 0)
    if i != len(lines):
        raise KtapError(f"line {i + 1}: text after the document: {lines[i]!r}")
    _check_parents(block)
    return block


def _check_parents(block: Block) -> None:
    """A failed child fails the parent; skips don't (ktap.rst)."""
    for t in block.tests:
        if t.subtests is None:
            continue
        _check_parents(t.subtests)
        failed = any(not c.ok and c.directive not in ("SKIP", "XFAIL", "TODO") for c in t.subtests.tests)
        if failed and t.ok:
            raise KtapError(f"test {t.number} {t.description!r} is ok but a subtest failed")
