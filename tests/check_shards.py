#!/usr/bin/env python3
"""`--shard K/N` partitions a run: the results of shards 1..N of `check` (catalog cases, the fold
and SyncBN-merge cases, properties) and of `verify` (fixtures) are, together, exactly the results
of the unsharded run, each once and with the same verdict, and each report says its shard.

usage: check_shards.py BNORACLE KERNEL_DIR CORPUS WORK
"""
import json
import os
import subprocess
import sys


def run(bnoracle, args, out):
    subprocess.run([bnoracle] + args + ["--quiet", "--report", "json", "--output", out],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.load(open(out))


def results(report):
    return sorted((c["case"], c["mode"], c["step"], c["verdict"]) for c in report["cases"])


def main():
    bnoracle, kernels, corpus, work = map(os.path.abspath, sys.argv[1:5])
    os.makedirs(work, exist_ok=True)
    kernel = os.path.join(kernels, "mutants", "libbnm_biased_running_var.so")
    check = ["check", "--kernel", kernel, "--filter", "*exact*", "--property-cases", "2"]
    results_dir = os.path.join(work, "results")
    subprocess.run([bnoracle, "results", "--kernel", kernel, "--fixtures", corpus, "--out",
                    results_dir, "--force"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    verify = ["verify", "--fixtures", corpus, "--results", results_dir, "--filter", "edge/"]
    properties = ["check", "--kernel", kernel, "--properties-only", "--property-cases", "2"]
    for name, args in (("check", check), ("properties", properties), ("verify", verify)):
        whole = run(bnoracle, args, os.path.join(work, name + ".json"))
        assert whole["options"]["shard"] == "1/1"
        n = 3
        parts = []
        for k in range(1, n + 1):
            report = run(bnoracle, args + ["--shard", "%d/%d" % (k, n)],
                         os.path.join(work, "%s_%d.json" % (name, k)))
            assert report["options"]["shard"] == "%d/%d" % (k, n), report["options"]
            assert report["cases"], "%s shard %d/%d is empty" % (name, k, n)
            parts += results(report)
        assert sorted(parts) == results(whole), "%s: the shards differ from the whole run" % name
        assert len(set(parts)) == len(parts), "%s: a result in two shards" % name
        print("%s: %d results in %d shards, each once, as in the whole run"
              % (name, len(parts), n))
    # Malformed shards are usage errors (exit 2).
    for bad in ("0/3", "4/3", "3", "1/0", "a/b", "1/100001"):
        rc = subprocess.run([bnoracle] + check + ["--shard", bad], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode
        assert rc == 2, "--shard %s: exit %d" % (bad, rc)


if __name__ == "__main__":
    main()
