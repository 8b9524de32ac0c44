#!/usr/bin/env python3
"""Runs numpy_bn.py on every bnoracle golden fixture and writes one results file per fixture.

    /usr/bin/python3 run_fixtures.py FIXTURES_DIR RESULTS_DIR [--wrong biased_running_var]
    bnoracle verify --fixtures FIXTURES_DIR --results RESULTS_DIR

Each results file goes to the same relative path under RESULTS_DIR as its fixture. The fixture's
"refusal" and "expected" fields are never read: the implementation decides for itself, and
`bnoracle verify` judges it.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_bn as bn  # noqa: E402

F32 = np.float32


def parse_hex(s):
    """One float as bnoracle writes it: a hex float ("0x1.8p+1"), "nan", "inf" or "-inf"."""
    return float.fromhex(s) if isinstance(s, str) else float(s)  # fromhex also takes nan/inf


def to_f32(values, shape=None):
    a = np.array([parse_hex(v) for v in values], dtype=np.float64).astype(F32)
    return a.reshape(shape) if shape is not None else a


def hex_f32(v):
    """A float32 as a hex string; float.hex gives "nan", "inf" and "-inf" for those."""
    return float.hex(float(F32(v)))


def run_one(fx, wrong):
    """The results dict for one parsed fixture."""
    case, inputs = fx["case"], fx["inputs"]
    # Schema version 2 names what runs in "mode" and the normalization in "op"; version 1 is
    # float32 batch norm with the mode in "op".
    op = case["mode"] if fx["schema_version"] >= 2 else case["op"]
    if fx["schema_version"] >= 2 and (case["op"]["kind"] != "batch_norm"
                                      or set(case["types"].values()) != {"float32"}):
        raise bn.Unsupported("this example is float32 batch norm only")
    convention = case["convention"]
    shape = tuple(case["shape"])
    eps = parse_hex(case["eps"])
    momentum = None if case["momentum"] is None else parse_hex(case["momentum"])
    if op == "fold":  # shape (O, K); "affine" says whether the layer has a bias
        get = lambda name: to_f32(inputs[name])
        return bn.fold(to_f32(inputs["weight"], shape), get("bias") if case["affine"] else None,
                       get("gamma"), get("beta"), get("running_mean"), get("running_var"), eps)
    if op == "syncbn_merge":  # shape (S, C): S shards of C channels
        return bn.syncbn_merge(inputs["count"], to_f32(inputs["shard_mean"], shape),
                               to_f32(inputs["shard_var"], shape), eps, convention, momentum,
                               to_f32(inputs["running_mean"]), to_f32(inputs["running_var"]),
                               int(inputs["num_batches_tracked"]))
    x = to_f32(inputs["src"], shape)
    gamma = to_f32(inputs["gamma"]) if case["affine"] else None
    beta = to_f32(inputs["beta"]) if case["affine"] else None

    def get(name):
        return to_f32(inputs[name])

    if op == "forward_training":
        running = None
        if case["track_running"]:
            running = (get("running_mean"), get("running_var"), int(inputs["num_batches_tracked"]))
        return bn.forward_training(x, gamma, beta, eps, convention, momentum, running, wrong)
    if op == "forward_inference":
        return bn.forward_inference(x, gamma, beta, eps, get("running_mean"), get("running_var"))
    dy = to_f32(inputs["diff_dst"], shape)
    if op == "backward_training":
        return bn.backward_training(x, dy, gamma, eps, convention)
    if op == "backward_inference":
        return bn.backward_inference(x, dy, gamma, eps, get("running_mean"), get("running_var"))
    raise bn.Unsupported("unknown op " + op)


def results_for(fx, rel_id, wrong):
    res = {"schema": "bnoracle.results", "schema_version": 1, "id": rel_id, "status": "ok"}
    try:
        with np.errstate(all="ignore"):  # NaN/Inf inputs and empty batches are legitimate cases
            out = run_one(fx, wrong)
    except bn.Refused as e:
        return dict(res, status="refused", message=str(e))
    except bn.Unsupported as e:
        return dict(res, status="unsupported", message=str(e))
    except Exception as e:  # a bug in the example: report it rather than stop the whole run
        return dict(res, status="failed", message="%s: %s" % (type(e).__name__, e))
    if "num_batches_tracked" in out:
        res["num_batches_tracked"] = int(out.pop("num_batches_tracked"))
    res["outputs"] = {name: [hex_f32(v) for v in np.asarray(a).ravel()] for name, a in out.items()}
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fixtures", help="directory written by `bnoracle export`")
    p.add_argument("results", help="directory to write results files into")
    p.add_argument("--wrong", choices=bn.WRONG_VARIANTS, help="introduce a deliberate bug")
    args = p.parse_args(argv)

    counts = {}
    for root, _, files in os.walk(args.fixtures):
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, args.fixtures)
            with open(path, encoding="utf-8") as f:
                fx = json.load(f)
            if fx.get("schema") != "bnoracle.fixture" or fx.get("schema_version") not in (1, 2):
                print("skipping %s: not a bnoracle.fixture v1 or v2 file" % rel, file=sys.stderr)
                continue
            rel_id = rel[: -len(".json")].replace(os.sep, "/")
            res = results_for(fx, rel_id, args.wrong)
            counts[res["status"]] = counts.get(res["status"], 0) + 1
            out = os.path.join(args.results, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "w", encoding="utf-8") as f:
                json.dump(res, f, indent=1)
                f.write("\n")
    if not counts:
        print("no fixtures found under %s" % args.fixtures, file=sys.stderr)
        return 2
    print("run_fixtures: " + ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
