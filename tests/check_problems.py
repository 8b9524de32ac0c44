#!/usr/bin/env python3
"""`check --problem`: problems of the user's are judged, in both tiers, with the catalog's recipes.

- With `--catalog none`, exactly the problems' cases run (four each: an exact tier and three
  general recipes), named problem<k>/..., each with the problem the spec states (eps and momentum
  as hex and decimal, the op, the layout and extents) — a correct kernel passes them all.
- A defective kernel fails on them (the mutant that adds eps outside the square root).
- `--problem @FILE` reads one spec per line, skipping blank lines and comments.
- A bad spec, a shape the op does not fit, an absurd size or an unreadable file is exit 2 with a
  message naming the problem; nothing runs.

usage: check_problems.py BNORACLE KERNEL_DIR WORK
"""
import json
import os
import subprocess
import sys


def check(bnoracle, args, work, name):
    out = os.path.join(work, name + ".json")
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([bnoracle, "check", *args, "--no-properties", "--quiet", "--report",
                        "json", "--output", out], capture_output=True, text=True, timeout=600)
    report = json.load(open(out)) if os.path.exists(out) else None
    return r, report


def main():
    bnoracle, kernels, work = map(os.path.abspath, sys.argv[1:4])
    os.makedirs(work, exist_ok=True)
    good = os.path.join(kernels, "libbnk_pairwise.so")
    bad = os.path.join(kernels, "mutants", "libbnm_eps_outside_sqrt.so")
    failures = []

    # (spec, what its cases' problem string must hold)
    problems = [
        ("nchw 2x3x5x7 eps=1e-3 momentum=0.2",
         ["nchw 2x3x5x7", "eps=" + float.hex(1e-3), "momentum=" + "%.17g" % 0.2]),
        ("nc 4x1000 op=layer_norm", ["nc 4x1000", "op=layer_norm(axes=1)"]),
        ("nhwc 2x6x4x4 eps=0x1p-10 op=group_norm(groups=3)",
         ["nhwc 2x6x4x4", "eps=0x1p-10", "op=group_norm(groups=3)"]),
        ("strided 3x40 strides=1,3 op=rms_norm(axes=1,weight_offset)",
         ["strided 3x40 strides=1,3", "op=rms_norm(axes=1,weight_offset)"]),
        ("nchw 2x3x4x4 momentum=none", ["nchw 2x3x4x4", "momentum=none"]),
    ]
    args = ["--kernel", good, "--catalog", "none"]
    for spec, _ in problems:
        args += ["--problem", spec]
    r, report = check(bnoracle, args, work, "good")
    if r.returncode != 0 or report is None:
        failures.append(f"a correct kernel on the problems: exit {r.returncode}: {r.stderr}")
    else:
        names = {c["case"] for c in report["cases"]}
        for k, (spec, parts) in enumerate(problems, start=1):
            mine = [c for c in report["cases"] if c["case"].startswith(f"problem{k}/")]
            cases = {c["case"].split("/")[1] + "/" + c["case"].split("/")[2] for c in mine}
            want = {"exact/pairs", "general/mixed", "general/offset_1e4", "general/constant"}
            if cases != want:
                failures.append(f"problem {k} ({spec}): cases {sorted(cases)}, not {sorted(want)}")
            for c in mine:
                for part in parts:
                    if part not in c["problem"]:
                        failures.append(f"{c['case']}: problem '{c['problem']}' lacks '{part}'")
                if c["verdict"] not in ("PASS", "SKIP", "MISTRUSTED"):
                    failures.append(f"{c['case']} {c['mode']}: {c['verdict']}: {c['reason']}")
        if any(not n.startswith("problem") for n in names):
            failures.append("--catalog none ran catalog cases too")
        if not any(c["verdict"] == "PASS" for c in report["cases"]):
            failures.append("nothing passed: the problems were not judged")

    # The defective kernel fails on a problem of the user's.
    r, report = check(bnoracle, ["--kernel", bad, "--catalog", "none", "--problem",
                                 problems[0][0]], work, "bad")
    if r.returncode != 1 or report is None or not any(
            c["verdict"] == "FAIL" for c in report["cases"]):
        failures.append(f"the mutant passed the user's problem (exit {r.returncode})")

    # A file of problems, with the catalog's cases too (narrowed by the filter).
    listing = os.path.join(work, "problems.txt")
    with open(listing, "w") as f:
        f.write("# shapes of my model\n\nnchw 2x3x5x7\n   nc 4x1000 op=layer_norm  \r\n")
    r, report = check(bnoracle, ["--kernel", good, "--problem", "@" + listing,
                                 "--filter", "problem"], work, "file")
    if r.returncode != 0 or report is None:
        failures.append(f"@FILE: exit {r.returncode}: {r.stderr}")
    else:
        prefixes = {c["case"].split("/")[0] for c in report["cases"]}
        if prefixes != {"problem1", "problem2"}:
            failures.append(f"@FILE gave cases of {sorted(prefixes)}")

    # Refused, with exit 2 and a message, before anything runs.
    refused = [
        (["--problem", "nchw 2x3"], "problem 'nchw 2x3'"),
        (["--problem", "hwcn 2x3x4x4"], "unknown layout 'hwcn'"),
        (["--problem", "nchw 2x3x4x4 eps=-1"], "eps wants a finite number"),
        (["--problem", "nchw 2x3x4x4 momentum=2"], "momentum wants a number in [0, 1]"),
        (["--problem", "nc 4x10 op=group_norm(groups=3)"], "problem 'nc 4x10"),
        (["--problem", "nc 4x10 op=softmax"], "unknown op 'softmax'"),
        (["--problem", "nchw 65536x65536x65536x2"], "more than 2^28 elements"),
        (["--problem", "nc 4x10 colour=red"], "unknown field 'colour=red'"),
        (["--problem", "@" + os.path.join(work, "no-such-file")], "cannot read the file"),
        (["--catalog", "none"], "leaves no case to run"),
    ]
    for extra, message in refused:
        r, _ = check(bnoracle, ["--kernel", good, *extra], work, "refused")
        if r.returncode != 2 or message not in r.stderr:
            failures.append(f"{extra}: exit {r.returncode}, stderr {r.stderr!r}; "
                            f"wanted exit 2 and {message!r}")

    for f in failures:
        print("FAIL:", f)
    print(f"{len(problems)} problems, {len(refused)} refusals checked")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
