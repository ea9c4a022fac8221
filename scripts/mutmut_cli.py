"""mutmut's own command line, with one change: message prose is not mutated.

mutmut mutates every string literal (`"XX" + s + "XX"`, lower and upper
case). In a sentence such as "domain is required: the Auth0 tenant domain"
those mutants change wording, not behaviour; the tests assert what a message
must carry (a name, a number, the action to take), which such a mutant
keeps. So a literal of four or more words is left alone; its call, its
arguments and the code around it are still mutated. Short strings (keys,
formats, separators, markup, Auth0's error texts matched by the code) have
fewer words and are mutated as usual.

It also adds `show-stdin`: `mutmut show` for each mutant named on stdin, in
one process (one `mutmut show` process per survivor costs a second each).

mutmut offers no hook for this (its do_not_mutate_patterns skip whole
lines, with their arguments), so this swaps its string operator in the
operator table before the CLI runs; mutmut builds the mutants in forked
workers, which inherit the table.
"""

from __future__ import annotations

import re
import sys

import libcst as cst
from mutmut.__main__ import cli, show
from mutmut.mutation import mutators

PROSE_WORDS = 4
# A word: letters, maybe wrapped in punctuation ("(or", "again.", "`host"), not
# a placeholder or markup such as %(message)s, {flag} or </data>.
_WORD = re.compile(r"[(\"'`]*[A-Za-z][A-Za-z'-]*[.,:;)!?\"'`]*")


def is_prose(node: cst.BaseString) -> bool:
    if not isinstance(node, cst.SimpleString):
        return False
    value = node.evaluated_value
    return isinstance(value, str) and sum(1 for token in value.split() if _WORD.fullmatch(token)) >= PROSE_WORDS


def _strings_but_prose(node: cst.BaseString):
    if not is_prose(node):
        yield from mutators.operator_string(node)


@cli.command("show-stdin")
def show_stdin() -> None:
    for name in sys.stdin.read().split():
        show.callback(name)


def main() -> int:
    table = mutators.mutation_operators
    table[:] = [
        (kind, _strings_but_prose if operator is mutators.operator_string else operator) for kind, operator in table
    ]
    return cli()


if __name__ == "__main__":
    sys.exit(main())
