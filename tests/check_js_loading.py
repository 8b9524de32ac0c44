#!/usr/bin/env python3
"""examples/js/fixture.mjs reads every value of the fixture corpus as Python does: each hex float
string gives the same double as float.fromhex (bit for bit, -0 and NaN included), each decimal
the same double as float(). The JavaScript is run with node; Python's own parsers are the
independent reading.

usage: check_js_loading.py NODE EXAMPLE CORPUS
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile


def bits(v):
    return struct.unpack("<Q", struct.pack("<d", v))[0]


# Hex strings at the ends of the double range, which the corpus need not hold: subnormals with a
# full mantissa (2^exponent alone underflows there), the largest double, signed zeros.
EDGES = ["0x1p-1074", "0x1.23456789abcdep-1030", "0x0.0000000000001p-1022", "-0x0p+0", "0x0p+0",
         "0x1.fffffffffffffp+1023", "-0x1.fffffep+127", "0x1p-149", "0x1.8p-1060", "0X1.8P+1"]


def main():
    node, example, corpus = sys.argv[1:4]
    edges = os.path.join(tempfile.mkdtemp(), "edges.json")
    with open(edges, "w") as f:
        json.dump({"schema": "bnoracle.fixture", "inputs": {"src": EDGES}}, f)
    out = subprocess.run([node, example, corpus, edges], check=True, capture_output=True,
                         text=True)
    lines = out.stdout.splitlines()
    hexes = decimals = 0
    for line in lines:
        path, field, s, js = line.split("\t")
        if s in ("undefined", "unspecified"):  # the class of an exact value that is none
            want = math.nan
        elif s.lower().lstrip("+-").startswith("0x") or s in ("nan", "inf", "-inf"):
            want = float.fromhex(s)
            hexes += 1
        else:
            want = float(s)
            decimals += 1
        got = float(js)
        same = (math.isnan(got) and math.isnan(want)) or bits(got) == bits(want)
        if not same:
            sys.exit("%s %s: %r reads as %s in JavaScript, %r in Python" % (path, field, s, js, want))
    if sum(1 for line in lines if line.split("\t")[0] == edges) != len(EDGES):
        sys.exit("the edge values were not all read")
    if hexes < 10000:
        sys.exit("only %d hex values read: the example did not walk the corpus" % hexes)
    print("JavaScript reads %d hex floats and %d decimals of the corpus as Python does"
          % (hexes, decimals))


if __name__ == "__main__":
    main()
