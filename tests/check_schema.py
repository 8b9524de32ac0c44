#!/usr/bin/env python3
"""Every corpus fixture validates against fixtures/schema/bnoracle.fixture.v1.schema.json, and
the schema is not vacuous: a fixture with a wrong op, a bad hex float or an unknown class letter
is rejected. usage: check_schema.py SCHEMA_DIR CORPUS_DIR"""
import copy
import glob
import json
import os
import sys

import jsonschema


def main():
    schema_dir, corpus = sys.argv[1], sys.argv[2]
    schema = json.load(open(os.path.join(schema_dir, "bnoracle.fixture.v1.schema.json")))
    json.load(open(os.path.join(schema_dir, "bnoracle.results.v1.schema.json")))  # parses
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(glob.glob(os.path.join(corpus, "**", "*.json"), recursive=True))
    assert files, "no fixtures under " + corpus
    for f in files:
        errors = list(validator.iter_errors(json.load(open(f))))
        assert not errors, "%s: %s at %s" % (f, errors[0].message, list(errors[0].path))
    sample = json.load(open(files[0]))
    broken = []
    b = copy.deepcopy(sample); b["case"]["op"] = "forward"; broken.append(b)
    b = copy.deepcopy(sample); b["inputs"]["src"][0] = "0x1.8p+1x"; broken.append(b)
    b = copy.deepcopy(sample)
    name = next(iter(b["expected"]))
    b["expected"][name]["classes"] = "z" + b["expected"][name]["classes"][1:]
    broken.append(b)
    b = copy.deepcopy(sample); b["schema_version"] = 2; broken.append(b)
    for i, b in enumerate(broken):
        assert list(validator.iter_errors(b)), "broken fixture %d was accepted" % i
    print("%d fixtures valid; %d broken variants rejected" % (len(files), len(broken)))


if __name__ == "__main__":
    main()
