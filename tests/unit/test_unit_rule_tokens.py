"""parse_rule's tokenizer: its fast path (plain printable ASCII, no quotes or
backslashes, split on spaces) gives exactly shlex.split's tokens, and the cache
hands back equal Rules without sharing mistakes between families."""

import shlex

from hypothesis import given
from hypothesis import strategies as st

from nsbox.model import rules

ALPHABET = st.sampled_from(list("-abcdefgh!/:.,0123456789 ABCZ_=\"'\\\t#"))


@given(st.text(ALPHABET, max_size=60))
def test_the_fast_path_splits_as_shlex_does(text):
    try:
        expected = shlex.split(text)
    except ValueError:
        return  # unbalanced quotes: the slow path's ValidationError, tested elsewhere
    assert rules._tokens(text) == expected


def test_the_cache_keeps_families_apart():
    four = rules.parse_rule("-p icmp -m icmp --icmp-type echo-request -j ACCEPT", 4)
    assert "--icmp-type 8" in four.render()
    again = rules.parse_rule("-p icmp -m icmp --icmp-type echo-request -j ACCEPT", 4)
    assert again is four
    six = rules.parse_rule("-s fd00::1/64 -j ACCEPT", 6)
    assert six.render() == "-s fd00::/64 -j ACCEPT"
