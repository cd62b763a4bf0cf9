"""nsbox/wire/ctnetlink.py's dump request is byte for byte what pyroute2 encodes for the
same request (what nsbox sent before it had its own encoder), for both families."""

import socket

import pytest
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_GET, nfct_msg

from nsbox.wire import ctnetlink


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_the_dump_request_is_what_pyroute2_encodes(family):
    req = nfct_msg()
    req["nfgen_family"] = family
    req["header"]["type"] = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    req["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    req["header"]["sequence_number"] = 1
    req.encode()
    assert ctnetlink.dump_request(family) == bytes(req.data)


def test_attributes_skip_padding_and_mask_flags():
    # two attributes: type 1|NESTED of 5 bytes of payload (padded to 8), type 2 of 4
    data = (b"\x09\x00\x01\x80" + b"abcde" + b"\x00\x00\x00" + b"\x08\x00\x02\x00" + b"wxyz")
    got = ctnetlink.attrs(data)
    assert {k: bytes(v) for k, v in got.items()} == {1: b"abcde", 2: b"wxyz"}
