#!/usr/bin/env python3
"""The conformance suite against one real kernel, compared with its documented verdicts.

    realkernels.py --bnoracle build/ci/tools/bnoracle --name onednn \
        --kernel build/ci/adapters/libbna_onednn.so --corpus fixtures/corpus \
        --work /tmp/rk --expect tests/real_kernels/onednn.expected

runs, for the kernel (a plugin with --kernel, or a process with --exec "CMD ARGS"):
  * `bnoracle check` (the catalog and the twelve properties) at strict, standard and lenient,
    a plugin in-process (--no-isolation; see --isolated-properties);
  * `bnoracle results` on the fixture corpus, then `bnoracle verify` at each level;
and writes every verdict that is not PASS, one line each:

    LEVEL  SOURCE  VERDICT  NAME
    all check SKIP syncbn/uneven_shards syncbn_merge
    all fixtures FAIL edge/empty_batch/nchw_0x3x2x2 forward_training
    strict check FAIL property/reference_agreement

(LEVEL "all": the same verdict at strict, standard and lenient.)

The list is compared with the expectation file (the verdicts docs/real-kernels.md reports and
explains): any difference, a new failure or a documented failure that went away, fails with a
diff. `--write` rewrites the expectation file instead. A summary table (markdown) of the counts
per level goes to --summary (default: stdout).

The machine-dependent choices of the kernels are pinned, so that the verdicts are the same on
any x86-64 machine with AVX2 and at least two CPUs: oneDNN's instruction set
(ONEDNN_MAX_CPU_ISA=AVX2) and its thread count (bnoracle runs on two CPUs: Debian's oneDNN
threads with TBB, which sizes its pool from the affinity mask; OMP_NUM_THREADS=2 for an OpenMP
build), PyTorch's CPU capability (ATEN_CPU_CAPABILITY=avx2; the adapters and the Python kernel
run PyTorch on one thread). Exit codes: 0 as documented, 1 a difference, 2 a
usage error or a run that could not complete (bnoracle exit 2 or 4).
"""

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
import time

LEVELS = ["strict", "standard", "lenient"]
PINNED_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "2",
    "ATEN_CPU_CAPABILITY": "avx2",
}


def die(msg):
    print("realkernels: " + msg, file=sys.stderr)
    sys.exit(2)


def two_cpus():
    """Runs the child on (at most) two CPUs: Debian's oneDNN threads with TBB, which sizes its
    pool from the CPU affinity mask, so its reduction order would otherwise follow the machine."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:2])


def run(cmd, env, what, nothing_judged_ok=False):
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       preexec_fn=two_cpus)
    secs = time.monotonic() - t0
    if p.returncode == 5 and nothing_judged_ok:
        return p, secs
    if p.returncode not in (0, 1, 3):  # conformant, not conformant, kernel fault
        die("%s exited %d:\n%s\n%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p, secs


OPS = ("batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm")


def undeclared_op(c):
    """A case of an op or of data types the kernel does not declare: skipped by construction,
    nothing to explain (a kernel is judged on the ops and types it implements)."""
    reason = c.get("reason", "")
    return c["verdict"] == "SKIP" and (
        any(reason.endswith("the kernel does not support " + op) for op in OPS)
        or "the kernel does not support the data types" in reason)


def non_pass(report, level, source):
    """The lines for every case of a JSON report whose verdict is not PASS."""
    lines = []
    for c in report["cases"]:
        if c["verdict"] == "PASS" or undeclared_op(c):
            continue
        name = c["case"]
        if c["mode"] != "property":
            name += " " + c["mode"]
            if c.get("step", 0) > 0:
                name += " step" + str(c["step"])
        lines.append("%s %s %s %s" % (level, source, c["verdict"], name))
    return lines


MODES = ["forward_training", "forward_inference", "backward_training", "backward_inference",
         "fold", "syncbn_merge"]
RANK = {"strict": 0, "standard": 1, "lenient": 2}


def per_mode(name, work):
    """Per mode, how many catalog cases and fixtures were judged and how many meet each level
    (from the strict runs, whose results carry the best level every output meets)."""
    rows = ["| kernel | mode | judged | meet strict | meet standard | meet lenient | "
            "mistrusted | skipped |", "|---|---|---|---|---|---|---|---|"]
    cases = []
    for f in ("check-strict.json", "verify-strict.json"):
        if not os.path.exists(os.path.join(work, f)):  # a --types run has no corpus
            continue
        with open(os.path.join(work, f)) as fh:
            cases += [c for c in json.load(fh)["cases"]
                      if c["mode"] != "property" and not undeclared_op(c)]
    for mode in MODES:
        mine = [c for c in cases if c["mode"] == mode]
        if not mine:
            continue
        judged = [c for c in mine if c["verdict"] in ("PASS", "FAIL", "FAULT")]
        meet = [sum(1 for c in judged if RANK.get(c.get("best_level"), 9) <= RANK[l])
                for l in LEVELS]
        rows.append("| %s | %s | %d | %d | %d | %d | %d | %d |" % (
            name, mode, len(judged), meet[0], meet[1], meet[2],
            sum(1 for c in mine if c["verdict"] == "MISTRUSTED"),
            sum(1 for c in mine if c["verdict"] == "SKIP")))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bnoracle", required=True)
    ap.add_argument("--name", required=True, help="the kernel's name in reports")
    ap.add_argument("--kernel", help="a kernel plugin (.so)")
    ap.add_argument("--exec", dest="exec_cmd", help='a kernel process: "CMD ARGS"')
    ap.add_argument("--corpus", required=True, help="the fixture corpus (fixtures/corpus)")
    ap.add_argument("--work", required=True, help="a scratch folder (emptied)")
    ap.add_argument("--expect", required=True, help="the expectation file")
    ap.add_argument("--write", action="store_true", help="rewrite the expectation file")
    ap.add_argument("--summary", help="write the markdown summary here (default: stdout)")
    ap.add_argument("--isolated-properties", action="store_true",
                    help="run the full checks with every call isolated (forked) too; by default "
                         "the full checks pass --no-isolation and the isolated calls are those "
                         "of the --no-properties run")
    ap.add_argument("--no-properties", action="store_true",
                    help="the catalog and the corpus only (compared with the expectation "
                         "file's lines that are not properties): the quick run of the "
                         "sanitizer pass")
    ap.add_argument("--types", help="the catalog in this data-type configuration "
                    "(bnoracle check --types) instead of the float32 suite; the corpus, float16 "
                    "and bfloat16 fixtures included, is the float32 run's")
    ap.add_argument("--op", help="only the cases of this op (bnoracle check --op)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set (or override a pinned) environment variable of the kernel runs")
    a = ap.parse_args()
    if (a.kernel is None) == (a.exec_cmd is None):
        die("exactly one of --kernel and --exec")
    if a.write and a.no_properties:
        die("--write needs the whole suite (without --no-properties)")
    kernel = ["--kernel", a.kernel] if a.kernel else ["--exec", a.exec_cmd]
    # A plugin's full check runs in-process: a forked child per call costs more than the kernel
    # (libtorch: 27 s instead of 4 s per level). Faults and out-of-bounds writes are the business
    # of the isolated --no-properties run (RealKernels.NAME.catalog), which covers every catalog
    # case and fixture; --exec kernels are never forked anyway.
    isolation_off = a.kernel is not None and not a.no_properties and not a.isolated_properties
    env = dict(os.environ)
    env.update(PINNED_ENV)
    for kv in a.env:
        name, _, value = kv.partition("=")
        env[name] = value
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)

    lines, rows = [], []
    for level in LEVELS:
        out = os.path.join(a.work, "check-%s.json" % level)
        p, secs = run([a.bnoracle, "check"] + kernel +
                      ["--level", level, "--report", "json", "--output", out] +
                      (["--no-properties"] if a.no_properties else []) +
                      (["--types", a.types] if a.types else []) +
                      (["--op", a.op] if a.op else []) +
                      (["--no-isolation"] if isolation_off else []), env, "check",
                      nothing_judged_ok=bool(a.types))
        if p.returncode == 5:
            # The kernel does not declare these types here (oneDNN builds bfloat16 primitives
            # only on CPUs that have the instructions): nothing to compare on this machine.
            print("realkernels: %s judges nothing in %s on this machine (the kernel does not "
                  "declare them here): skipped" % (a.name, a.types))
            return 0
        with open(out) as f:
            report = json.load(f)
        lines += non_pass(report, level, "check")
        rows.append(("check", level, report["summary"], secs))
    results = os.path.join(a.work, "results")
    if not a.types:
        run([a.bnoracle, "results"] + kernel + ["--fixtures", a.corpus, "--out", results], env,
            "results")
    for level in LEVELS if not a.types else []:
        out = os.path.join(a.work, "verify-%s.json" % level)
        _, secs = run([a.bnoracle, "verify", "--fixtures", a.corpus, "--results", results,
                       "--level", level, "--report", "json", "--output", out], env, "verify")
        with open(out) as f:
            report = json.load(f)
        lines += non_pass(report, level, "fixtures")
        rows.append(("fixtures", level, report["summary"], secs))

    # A verdict that is the same at every level is written once, with the level "all".
    rest = [l.split(" ", 1)[1] for l in lines]
    merged = sorted({"all " + r for r in rest if rest.count(r) == len(LEVELS)})
    order = {l: i for i, l in enumerate(LEVELS)}
    lines = merged + sorted((l for l in lines if rest.count(l.split(" ", 1)[1]) < len(LEVELS)),
                            key=lambda l: (order[l.split()[0]], l))
    text = "".join(l + "\n" for l in lines)
    summary = ["| kernel | run | level | verdict | passed | failed | skipped | mistrusted | faults |",
               "|---|---|---|---|---|---|---|---|---|"]
    for source, level, s, _ in rows:
        verdict = "CONFORMANT" if s["exit_code"] == 0 else "NOT CONFORMANT"
        summary.append("| %s | %s | %s | %s | %d | %d | %d | %d | %d |" % (
            a.name, "check" if source == "check" else "corpus", level, verdict, s["passed"],
            s["failed"], s["skipped"], s["mistrusted"], s["faults"]))
    summary += ["", per_mode(a.name, a.work)]
    summary_text = "\n".join(summary) + "\n"
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(summary_text)
    else:
        sys.stdout.write(summary_text)
    print("timings: " + ", ".join("%s %s %.0f s" % (r[0], r[1], r[3]) for r in rows))

    header = ("# Verdicts other than PASS of bnoracle's suite against %s%s, one per line:\n"
              "# LEVEL SOURCE VERDICT NAME (LEVEL all: the same at every level).\n"
              "# Written by tools/realkernels/realkernels.py --write; each line is explained\n"
              "# in docs/real-kernels.md.\n" %
              (a.name, " in the data types " + a.types if a.types else ""))
    if a.write:
        with open(a.expect, "w") as f:
            f.write(header + text)
        print("realkernels: wrote %s (%d lines)" % (a.expect, len(lines)))
        return 0
    try:
        with open(a.expect) as f:
            expected = [l for l in f.read().splitlines(True) if not l.startswith("#") and
                        not (a.no_properties and " property/" in l)]
    except OSError as e:
        die("cannot read %s: %s" % (a.expect, e))
    got = text.splitlines(True)
    if expected == got:
        print("realkernels: %s: %d documented non-PASS verdicts, as expected" % (a.name, len(got)))
        return 0
    sys.stdout.writelines(difflib.unified_diff(expected, got, a.expect + " (documented)",
                                               "this run", n=0))
    print("realkernels: %s: the verdicts differ from %s (reports in %s)" %
          (a.name, a.expect, a.work))
    return 1


if __name__ == "__main__":
    sys.exit(main())
