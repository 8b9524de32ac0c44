#!/usr/bin/env python3
"""The JSON reports of `bnoracle check` and `verify` validate against their published schema
(fixtures/schema/bnoracle.check.v1.schema.json) in every situation that shapes them: a
conformant run with properties, a failing mutant, a kernel that skips modes, a faulting kernel,
float16 data, mistrusted cases, a long reason written to a file, and `verify`. The schema is not
vacuous: reports with a field missing, an unknown field, a wrong verdict or a malformed hex float
are rejected. Every failing output carries its worst element's exact value and bound, and the
exact value lies within error_ulps of the correctly rounded expected value's neighbourhood.

usage: check_report_schema.py BNORACLE KERNEL_DIR FAULTY_DIR SCHEMA_DIR CORPUS WORK
"""
import copy
import json
import math
import os
import subprocess
import sys

import jsonschema


def main():
    bnoracle, kernels, faulty, schema_dir, corpus, work = map(os.path.abspath, sys.argv[1:7])
    os.makedirs(work, exist_ok=True)
    schema = json.load(open(os.path.join(schema_dir, "bnoracle.check.v1.schema.json")))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    mutant = os.path.join(kernels, "mutants", "libbnm_%s.so")
    runs = {
        "conformant": (0, ["check", "--kernel", os.path.join(kernels, "libbnk_pairwise.so"),
                           "--filter", "exact/basic", "--property-cases", "2"]),
        "failing": (1, ["check", "--kernel", mutant % "biased_running_var", "--filter",
                        "exact/basic", "--no-properties"]),
        "skipping": (0, ["check", "--kernel", os.path.join(kernels, "libbnk_minimal.so"),
                         "--filter", "exact/basic", "--no-properties"]),
        "faulting": (3, ["check", "--kernel", os.path.join(faulty, "faulty_null_deref.so"),
                         "--filter", "exact/two_values", "--no-properties", "--timeout", "5"]),
        "float16": (0, ["check", "--kernel", os.path.join(kernels, "libbnk_pairwise.so"),
                        "--filter", "exact/basic", "--types", "cudnn_mixed"]),
        "mistrusted": (5, ["check", "--kernel", os.path.join(kernels, "libbnk_pairwise.so"),
                           "--filter", "general/offset_1e6", "--no-properties"]),
        "long_reason": (1, ["check", "--kernel", mutant % "block_remainder_dropped",
                            "--properties-only", "--property-cases", "30", "--filter",
                            "property/reference_agreement"]),
    }
    reports = {}
    for name, (code, args) in runs.items():
        out = os.path.join(work, name + ".json")
        rc = subprocess.run([bnoracle] + args + ["--quiet", "--report", "json", "--output", out],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
        assert rc == code, "%s: exit %d, expected %d" % (name, rc, code)
        reports[name] = json.load(open(out))
    # verify: the bundled kernel's results of a few fixtures, judged.
    fixtures = os.path.join(corpus)
    results = os.path.join(work, "results")
    subprocess.run([bnoracle, "results", "--kernel", os.path.join(kernels, "libbnk_two_pass.so"),
                    "--fixtures", fixtures, "--out", results, "--force"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.path.join(work, "verify.json")
    subprocess.run([bnoracle, "verify", "--fixtures", fixtures, "--results", results, "--filter",
                    "edge/", "--quiet", "--report", "json", "--output", out],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reports["verify"] = json.load(open(out))

    for name, report in reports.items():
        errors = list(validator.iter_errors(report))
        assert not errors, "%s: %s at %s" % (name, errors[0].message, list(errors[0].path))
    assert any(c["verdict"] == "SKIP" for c in reports["skipping"]["cases"])
    assert any(c["verdict"] == "FAULT" for c in reports["faulting"]["cases"])
    assert any(c["verdict"] == "MISTRUSTED" for c in reports["mistrusted"]["cases"])
    assert reports["float16"]["options"]["types"] != "float32"
    assert any(c["reason_file"] for c in reports["long_reason"]["cases"])

    # The worst element of every failing output: got - exact is error_ulps ulps, and the exact
    # value rounds to `expected` (|exact - expected| is at most half an ulp).
    checked = 0
    for c in reports["failing"]["cases"]:
        for o in c["outputs"]:
            if o["passed"]["standard"] or o["class_failure"]:
                continue
            got, expected = float.fromhex(o["got"]), float.fromhex(o["expected"])
            exact, bound = float(o["exact"]), float(o["bound"])
            ulp = abs(got - exact) / abs(o["error_ulps"])
            assert abs(exact - expected) <= 0.5 * ulp * (1 + 1e-9), (o, ulp)
            assert math.isclose(bound / ulp, o["bound_ulps"], rel_tol=1e-9), o
            assert abs(got - exact) > bound, o
            checked += 1
    assert checked > 0, "no failing output to check"

    # Not vacuous.
    base = reports["failing"]
    for what, mutate in (
            ("a missing summary", lambda r: r.pop("summary")),
            ("an unknown field", lambda r: r.update(extra=1)),
            ("a wrong verdict", lambda r: r["cases"][0].update(verdict="OK")),
            ("a malformed hex float", lambda r: r["cases"][0]["outputs"][0].update(got="1.5")),
            ("a missing bound", lambda r: r["cases"][0]["outputs"][0].pop("bound")),
            ("another schema", lambda r: r.update(schema="bnoracle.results"))):
        bad = copy.deepcopy(base)
        mutate(bad)
        assert list(validator.iter_errors(bad)), "the schema accepts " + what
    print("%d JSON reports validate against bnoracle.check.v1; %d failing outputs carry their "
          "exact value and bound" % (len(reports), checked))


if __name__ == "__main__":
    main()
