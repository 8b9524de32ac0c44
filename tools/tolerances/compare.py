#!/usr/bin/env python3
"""bnoracle's bounds against peers' tolerances, element by element on the same data.

For each data-type configuration, `bnoracle export --catalog check --types CFG` writes the
check catalog as fixtures (inputs, correctly rounded goldens, exact values and bnoracle's bound
of every element). Each kernel's results on them (`bnoracle results`) are then judged by every
criterion below, with the exact value as the expected one (what the criterion says when its
reference is exact; a peer's own float32 reference adds its error, which may hide or add
differences):

  bnoracle       |got - exact| <= bound at the kernel's level (classes first: NaN where a
                 value exists fails), as `bnoracle verify` judges.
  benchdnn       oneDNN's benchdnn (tests/benchdnn/{bnorm,lnorm,gnorm}, setup_cmp): threshold
                 trh = base * 2^(24 - digits), digits 11 (f16) or 8 (bf16): x8192 or x65536;
                 base 6e-7 (bnorm, gnorm) or 5e-7 (lnorm) for dst and diff_src, 5e-6 for
                 diff_scale/diff_shift. Forward point by point: relative error (absolute where
                 |exp| <= 1e-5) <= trh. Backward: the relative L2 norm of the error over the
                 tensor <= trh. Mean and variance (threshold 0) are not compared here.
  torch          torch.testing.assert_close's defaults for the output's dtype
                 (_DTYPE_PRECISIONS: float16 rtol 1e-3, bfloat16 1.6e-2, float32 1.3e-6; atol
                 1e-5): |got - exp| <= atol + rtol*|exp|. PyTorch's OpInfos of the norms have no
                 float16/bfloat16 override.
  te             TransformerEngine's C++ normalization test (tests/cpp/operator/
                 test_normalization.cu, getTolerances): an element fails only if |t - r| > atol
                 and |t - r|/|r| > rtol; output {atol 1e-5, rtol 1e-3} float16, {1e-5, 1e-2}
                 bfloat16; saved statistics float32 tolerances (rtol 5e-5); dx, dgamma, dbeta
                 atol = rtol = 5e-4.
  liger          Liger-Kernel's RMSNorm test (test/transformers/test_rms_norm.py) in bfloat16:
                 atol 0.2, rtol 0.02 (|a - b| <= atol + rtol*|b|); its first version used atol
                 5.0 (column liger_v1).

A kernel output (one output of one fixture) is rejected by a criterion when any of its elements
fails it (benchdnn backward: when the tensor's norm does). For a correct kernel every rejection
is a false positive. A defective (or real) kernel's output counts only where the criterion
accepts the correct pairwise kernel's same output: a criterion that rejects correct results
there anyway does not tell the defect; it is caught when at least one output counts.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEVELS = ["strict", "standard", "lenient"]

# (configuration, kernel label, kernel option list, level, correct?)
CORRECT = [("pairwise", "strict"), ("two_pass", "lenient"), ("welford", "lenient")]
MUTANTS = {
    "cudnn_mixed": ["fam_sums_in_half", "fam_count_in_half", "rms_square_in_half",
                    "fam_saved_stats_in_data_type"],
    "bf16_weights": ["fam_normalized_in_bf16", "offset_in_bf16", "fam_dgamma_terms_in_bf16",
                     "fam_dgamma_accumulated_in_bf16"],
    "bf16_mixed": ["in_running_in_data_type"],
}
CONFIGURATIONS = ["cudnn_mixed", "bf16_mixed", "bf16_weights", "pytorch_cpu_bf16"]
CRITERIA = ["bnoracle", "benchdnn", "torch", "te", "liger", "liger_v1"]
TORCH_RTOL = {"float16": 1e-3, "bfloat16": 1.6e-2, "float32": 1.3e-6}
TE_FWD = {"float16": (1e-5, 1e-3), "bfloat16": (1e-5, 1e-2), "float32": (5e-7, 5e-6)}
DIGITS = {"float16": 11, "bfloat16": 8, "float32": 24}


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode not in (0, 1, 5):
        sys.exit("compare-tolerances: %s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stderr))
    return p


def value(v):
    return float(v) if v in ("nan", "inf", "-inf") else float.fromhex(v)


def fixtures_of(folder):
    for base, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith(".json"):
                yield os.path.relpath(os.path.join(base, f), folder)


def role_type(case, output):
    role = "data" if output in ("dst", "diff_src") else \
        "parameters" if output in ("diff_gamma", "diff_beta") else "statistics"
    return case["types"][role]


def benchdnn_threshold(op, output, dtype):
    base = 5e-6 if output in ("diff_gamma", "diff_beta") else \
        (5e-7 if op in ("layer_norm", "rms_norm") else 6e-7)
    return base * 2 ** max(0, 24 - DIGITS[dtype])


def judge(fx, res, level):
    """Per output of one fixture: {criterion: rejected?} for the elements a value decides."""
    case = fx["case"]
    backward = case["mode"].startswith("backward")
    out = {}
    for name, e in fx["expected"].items():
        got_list = res.get("outputs", {}).get(name)
        if got_list is None:
            continue
        dtype = role_type(case, name)
        rejected = dict.fromkeys(CRITERIA, False)
        err2 = ref2 = 0.0
        judged = 0
        for i, cls in enumerate(e["classes"]):
            got = value(got_list[i])
            if cls == "u":
                if math.isfinite(got):
                    rejected["bnoracle"] = True
                continue
            if cls in ("s", "i"):
                if cls == "i" and got != value(e["values"][i]):
                    rejected["bnoracle"] = True
                continue
            exact = float(e["exact"][i])
            bound = value(e["bound"][level][i])
            if cls == "o" and math.isinf(got) and (got < 0) == (value(e["values"][i]) < 0):
                continue  # the correctly rounded result of an overflowing value
            judged += 1
            diff = abs(got - exact) if math.isfinite(got) else math.inf
            if not diff <= bound:
                rejected["bnoracle"] = True
            # benchdnn
            trh = benchdnn_threshold(case["op"]["kind"], name, dtype)
            if backward or name in ("mean", "var", "invstd", "running_mean", "running_var"):
                err2 += diff * diff
                ref2 += exact * exact
            else:
                rel = diff / abs(exact) if abs(exact) > 1e-5 else diff
                if not rel <= trh:
                    rejected["benchdnn"] = True
            # torch.testing.assert_close
            if not diff <= 1e-5 + TORCH_RTOL[dtype] * abs(exact):
                rejected["torch"] = True
            # TransformerEngine
            if name in ("dst",):
                atol, rtol = TE_FWD[dtype]
            elif name in ("mean", "var", "invstd"):
                atol, rtol = 1e-6, 5e-5
            else:
                atol, rtol = 5e-4, 5e-4
            if diff > atol and (exact == 0 or diff / abs(exact) > rtol):
                rejected["te"] = True
            # Liger-Kernel
            if not diff <= 0.2 + 0.02 * abs(exact):
                rejected["liger"] = True
            if not diff <= 5.0 + 1e-5 * abs(exact):
                rejected["liger_v1"] = True
        if backward and judged and name in ("diff_src", "diff_gamma", "diff_beta"):
            trh = benchdnn_threshold(case["op"]["kind"], name, dtype)
            norm = math.sqrt(err2 / ref2) if ref2 > 0 else math.sqrt(err2)
            if not norm <= trh:
                rejected["benchdnn"] = True
        if judged or rejected["bnoracle"]:
            out[name] = rejected
    return out


def verdicts(fixture_dir, results_dir, level):
    """{(fixture, output): {criterion: rejected?}} of one kernel's results."""
    out = {}
    for rel in fixtures_of(fixture_dir):
        with open(os.path.join(fixture_dir, rel)) as f:
            fx = json.load(f)
        rpath = os.path.join(results_dir, rel)
        if not os.path.exists(rpath):
            continue
        with open(rpath) as f:
            res = json.load(f)
        if res.get("status") != "ok":
            continue
        for name, rejected in judge(fx, res, level).items():
            out[(rel, name)] = rejected
    return out


def tally(mine, correct=None):
    """{criterion: outputs rejected}, outputs judged. With `correct` (the verdicts of a correct
    kernel on the same fixtures), only the outputs the criterion accepts from the correct kernel
    count: a rejection that tells the defect from correct arithmetic."""
    counts = dict.fromkeys(CRITERIA, 0)
    for key, rejected in mine.items():
        for c in CRITERIA:
            fair = correct is None or not correct.get(key, {}).get(c, False)
            counts[c] += rejected[c] and fair
    return counts, len(mine)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "ci"))
    ap.add_argument("--work", default="/tmp/bnoracle-compare-tolerances")
    ap.add_argument("--markdown", help="write the table here (default: stdout)")
    ap.add_argument("--seed", default="1")
    a = ap.parse_args()
    bn = os.path.join(a.build, "tools", "bnoracle")
    shutil.rmtree(a.work, ignore_errors=True)
    rows = []
    for cfg in CONFIGURATIONS:
        fixtures = os.path.join(a.work, cfg, "fixtures")
        run([bn, "export", "--catalog", "check", "--types", cfg, "--seed", a.seed,
             "--out", fixtures])
        kernels = [(k, ["--kernel", os.path.join(a.build, "kernels", "libbnk_%s.so" % k)], lvl,
                    True) for k, lvl in CORRECT]
        kernels += [(m, ["--kernel", os.path.join(a.build, "kernels", "mutants",
                                                  "libbnm_%s.so" % m)], "lenient", False)
                    for m in MUTANTS.get(cfg, [])]
        try:
            import torch  # noqa: F401
            kernels.append(("torch (PyTorch %s CPU)" % torch.__version__,
                            ["--exec", "/usr/bin/python3 %s" % os.path.join(
                                ROOT, "examples", "subprocess", "torch_kernel.py")],
                            "lenient", None))
        except ImportError:
            pass
        reference = None  # the first correct kernel's verdicts (pairwise)
        for label, option, level, correct in kernels:
            results = os.path.join(a.work, cfg, "results", label.split()[0])
            run([bn, "results"] + option + ["--fixtures", fixtures, "--out", results])
            mine = verdicts(fixtures, results, level)
            if reference is None:
                reference = mine
            counts, outputs = tally(mine, None if correct else reference)
            rows.append((cfg, label, level, correct, counts, outputs))
            print("%-17s %-34s %s" % (cfg, label, " ".join(
                "%s=%d" % (c, counts[c]) for c in CRITERIA) + " of %d" % outputs), flush=True)
    kind = {True: "correct", False: "defect", None: "real"}
    md = ["# bnoracle's bounds against peers' tolerances", "",
          "<!-- Generated by tools/compare-tolerances; do not edit by hand. -->", "",
          "The check catalog exported in each configuration (`bnoracle export --catalog check "
          "--types CFG --seed %s`): every kernel's results judged element by element by each "
          "criterion, with the exact value as the expected one (a peer's own float32 reference "
          "adds its error). A cell is a number of kernel outputs (one output of one fixture), "
          "of the outputs column. For a correct kernel: the outputs the criterion rejects, "
          "every one a false positive. For a defect or a real kernel: the outputs it rejects "
          "where it accepts the correct pairwise kernel's — the rejections that tell the "
          "defect from correct arithmetic; a criterion with 0 there misses the defect. The criteria and their sources are "
          "in `tools/tolerances/compare.py`; docs/error-model.md derives bnoracle's." % a.seed,
          "",
          "| configuration | kernel | kind | level | outputs | " + " | ".join(CRITERIA) + " |",
          "|---|---|---|---|---|" + "---|" * len(CRITERIA)]
    for cfg, label, level, correct, counts, outputs in rows:
        md.append("| %s | %s | %s | %s | %d | %s |" % (
            cfg, label, kind[correct], level, outputs,
            " | ".join(str(counts[c]) for c in CRITERIA)))
    text = "\n".join(md) + "\n"
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
