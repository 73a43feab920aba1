"""espconn.names: strict IP parsing and RFC 6125 host name matching."""

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espconn import names

# --- parse_ip ------------------------------------------------------------------

IPV4_OK = [
    ("1.2.3.4", b"\x01\x02\x03\x04"),
    ("0.0.0.0", b"\x00\x00\x00\x00"),
    ("255.255.255.255", b"\xff\xff\xff\xff"),
    ("127.0.0.1", b"\x7f\x00\x00\x01"),
    ("192.168.4.1", b"\xc0\xa8\x04\x01"),
    ("10.0.100.9", b"\x0a\x00\x64\x09"),
]

NOT_IP = [
    "",
    "1.2.3",  # shorthand: inet_aton would read 1.2.0.3; refused
    "1.2.3.4.5",
    "1.2.3.4.",  # trailing dot
    ".1.2.3.4",
    "01.2.3.4",  # leading zero: octal to inet_aton; refused
    "1.2.3.04",
    "1.2.3.00",
    "256.1.1.1",
    "1.2.3.256",
    "1.2.3.1000",
    "1.2..4",
    "1.2.3.-4",
    "1.2.3.+4",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.0x4",
    "0x7f.0.0.1",
    "2130706433",  # one decimal number: inet_aton's 127.0.0.1
    "1.2.3.٤",  # Arabic-Indic digit four: int() would take it
    "1.2.3.4_",
    "1_0.2.3.4",  # int() accepts underscores
    "localhost",
    "example.com",
    ":",
    ":::",
    "1:::2",
    ":1::",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",  # seven groups and no "::"
    "1:2:3:4:5:6:7:8::",
    "::1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:",
    ":1:2:3:4:5:6:7",
    "12345::",
    "g::1",
    "::ffff:1.2.3",
    "::ffff:01.2.3.4",
    "1.2.3.4::",
    "::1.2.3.4:5",
    "1:2:3:4:5:6:7:1.2.3.4",  # 7 groups + IPv4 = 9
    "fe80::1%eth0",  # zone
    "[::1]",  # brackets
    "::1/128",
    "2001:db8::1 ",
]


@pytest.mark.parametrize("text, packed", IPV4_OK)
def test_ipv4(text, packed):
    assert names.parse_ip(text) == packed


@pytest.mark.parametrize(
    "text",
    [
        "::1",
        "::",
        "1::",
        "2001:db8::1",
        "2001:DB8:0:0:8:800:200C:417A",
        "FF01::101",
        "fe80::1ff:fe23:4567:890a",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",  # "::" for a single zero group
        "::2:3:4:5:6:7:8",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "64:ff9b::192.0.2.33",
        "0000:0000:0000:0000:0000:0000:0000:0001",
    ],
)
def test_ipv6(text):
    assert names.parse_ip(text) == ipaddress.IPv6Address(text).packed


@pytest.mark.parametrize("text", NOT_IP)
def test_not_ip(text):
    assert names.parse_ip(text) is None


def test_parse_ip_bytes_and_junk_types():
    assert names.parse_ip(b"10.1.2.3") == b"\x0a\x01\x02\x03"
    assert names.parse_ip(b"\xff\xfe") is None
    assert names.parse_ip(None) is None
    assert names.parse_ip(1234) is None


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_every_address_roundtrips(addr):
    # Compressed and exploded text forms both parse to the address' bytes.
    assert names.parse_ip(str(addr)) == addr.packed
    assert names.parse_ip(addr.exploded) == addr.packed


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:.x%-[] ", max_size=46))
def test_anything_accepted_is_an_address(text):
    # Never looser than CPython's (strict) ipaddress module, and same bytes.
    got = names.parse_ip(text)
    if got is not None:
        assert got == ipaddress.ip_address(text).packed


# --- match_dns -----------------------------------------------------------------

MATCH = [
    ("example.com", "example.com"),
    ("EXAMPLE.com", "example.COM"),  # ASCII case-insensitive
    ("example.com.", "example.com"),  # trailing dot ignored on either side
    ("example.com", "example.com."),
    ("*.example.com", "www.example.com"),
    ("*.Example.COM", "WWW.example.com"),
    ("*.example.com.", "a.example.com"),
    ("*.a.b.example.com", "x.a.b.example.com"),
    ("*.example.com", "xn--bcher-kva.example.com"),
    ("xn--bcher-kva.example", "XN--BCHER-KVA.example"),
    ("_srv.example.com", "_srv.example.com"),
    ("esp-01.local", "esp-01.local"),
    ("localhost", "localhost"),
    ("*.co.uk", "x.co.uk"),  # no public-suffix list (documented)
    (b"*.example.com", "m.example.com"),  # SAN bytes
    (bytearray(b"example.com"), "example.com"),
]

NO_MATCH = [
    ("example.com", "example.org"),
    ("example.com", "www.example.com"),
    ("www.example.com", "example.com"),
    ("*.example.com", "example.com"),  # wildcard needs a label
    ("*.example.com", "a.b.example.com"),  # exactly one label
    ("*.example.com", ".example.com"),
    ("*.com", "example.com"),  # needs >= 2 labels after it
    ("*", "example"),
    ("*.", "example"),
    ("f*.example.com", "foo.example.com"),  # partial-label wildcards
    ("*o.example.com", "foo.example.com"),
    ("f*o.example.com", "foo.example.com"),
    ("**.example.com", "ab.example.com"),
    ("www.*.com", "www.example.com"),  # not left-most
    ("*.*.example.com", "a.b.example.com"),
    ("example.*", "example.com"),
    ("*.example.com", "*.example.com"),  # host with "*" is no host
    ("*.0.0.1", "127.0.0.1"),  # never an IP address
    ("127.0.0.1", "127.0.0.1"),  # IPs only against iPAddress entries
    ("*.2.3.4", "1.2.3.4"),
    ("::1", "::1"),
    ("1.2.3", "1.2.3"),  # numeric TLD: an address to inet_aton, no name
    ("01.2.3.4", "01.2.3.4"),
    ("a.1", "a.1"),
    ("example..com", "example..com"),  # empty label
    (".example.com", ".example.com"),
    ("example.com..", "example.com"),
    ("", ""),
    ("", "example.com"),
    ("example.com", ""),
    ("exa mple.com", "exa mple.com"),
    ("ex\x00ample.com", "ex\x00ample.com"),
    (b"b\xc3\xbccher.example", "bücher.example"),  # non-ASCII (U-labels)
    ("bücher.example", "bücher.example"),
    ("a" * 64 + ".com", "a" * 64 + ".com"),  # label > 63
    (".".join(["a"] * 127) + ".com", ".".join(["a"] * 127) + ".com"),  # > 253
    ("example.com", None),
    (None, "example.com"),
]


@pytest.mark.parametrize("pattern, host", MATCH)
def test_match(pattern, host):
    assert names.match_dns(pattern, host) is True


@pytest.mark.parametrize("pattern, host", NO_MATCH)
def test_no_match(pattern, host):
    assert names.match_dns(pattern, host) is False


def test_longest_names_still_match():
    label = "a" * 63
    name = ".".join([label] * 3) + "." + "b" * 61  # 253 bytes
    assert len(name) == 253
    assert names.match_dns(name, name.upper())
    assert names.match_dns("*." + name.split(".", 1)[1], "x." + name.split(".", 1)[1])


_HOST_LABEL = st.from_regex(r"\A[a-z0-9_-]{1,12}\Z")
_TLD = st.from_regex(r"\A[a-z][a-z0-9-]{0,8}\Z")


@settings(max_examples=300, deadline=None)
@given(st.lists(_HOST_LABEL, min_size=1, max_size=4), _TLD, _HOST_LABEL)
def test_wildcard_property(labels, tld, first):
    host = ".".join([first] + labels + [tld])
    base = ".".join(labels + [tld])
    assert names.match_dns(host, host.upper())
    assert names.match_dns("*." + base, host) is (len(labels) + 1 >= 2)
    assert not names.match_dns("*." + host, host)
    assert not names.match_dns("*." + base, "z." + host)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40)), st.text(max_size=40))
def test_any_input_is_a_bool(pattern, host):
    assert names.match_dns(pattern, host) in (True, False)


# --- the same on MicroPython --------------------------------------------------

_MP = r"""
from espconn import names
# One case per line, one result per line: the 38 KiB heap holds espconn and
# a line, not a whole table.
with open("cases.txt") as f:
    for line in f:
        f_ = line.rstrip("\n").split("\t")
        if f_[0] == "ip":
            r = names.parse_ip(f_[1])
            print("None" if r is None else ",".join([str(b) for b in r]))
        else:
            p = f_[1].encode() if f_[1].startswith("*") else f_[1]
            print(names.match_dns(p, f_[2]))
"""


@pytest.mark.micropython
def test_same_results_on_micropython(micropython, firmware_mpy, tmp_path):
    ips = [t for t, _ in IPV4_OK] + [t for t in NOT_IP] + ["::1", "2001:db8::1", "::ffff:1.2.3.4", "1:2:3:4:5:6:7::"]
    dns = [(p if isinstance(p, str) else bytes(p).decode("latin-1"), h) for p, h in MATCH + NO_MATCH if isinstance(h, str) and p is not None]
    dns = [(p, h) for p, h in dns if "\t" not in p + h and "\n" not in p + h]
    lines = ["ip\t" + t for t in ips] + ["dns\t%s\t%s" % ph for ph in dns]
    (tmp_path / "cases.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    drv = firmware_mpy.driver(tmp_path / "drv", "names_driver", _MP)
    proc = micropython.run("import names_driver\n", path=(drv, firmware_mpy(empty_init=True)))
    got = proc.stdout.strip().splitlines()
    want = []
    for t in ips:
        r = names.parse_ip(t)
        want.append("None" if r is None else ",".join(str(b) for b in r))
    for p, h in dns:
        want.append(str(names.match_dns(p.encode("latin-1") if p.startswith("*") else p, h)))
    assert got == want
    assert want.count("True") >= 10 and want.count("None") == len(NOT_IP)
