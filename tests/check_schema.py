#!/usr/bin/env python3
"""Every fixture under each given folder validates against the published JSON Schema of its own
schema_version (fixtures/schema/bnoracle.fixture.v<N>.schema.json), and the schemas are not
vacuous: fixtures with a wrong mode, a bad hex float, an unknown class letter, another version, an
unknown op or data type, or a strided layout without strides are rejected.
usage: check_schema.py SCHEMA_DIR FOLDER..."""
import copy
import glob
import json
import os
import sys

import jsonschema


def main():
    schema_dir, folders = sys.argv[1], sys.argv[2:]
    validators = {}
    for version in (1, 2):
        path = os.path.join(schema_dir, "bnoracle.fixture.v%d.schema.json" % version)
        validators[version] = jsonschema.Draft202012Validator(json.load(open(path)))
    json.load(open(os.path.join(schema_dir, "bnoracle.results.v1.schema.json")))  # parses
    samples = {}
    total = 0
    for folder in folders:
        files = sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True))
        assert files, "no fixtures under " + folder
        for f in files:
            doc = json.load(open(f))
            version = doc.get("schema_version")
            assert version in validators, "%s: schema_version %r" % (f, version)
            errors = list(validators[version].iter_errors(doc))
            assert not errors, "%s: %s at %s" % (f, errors[0].message, list(errors[0].path))
            samples.setdefault(version, doc)
        total += len(files)
    broken = []  # (version, document)
    for version, sample in samples.items():
        mode_key = "op" if version == 1 else "mode"
        b = copy.deepcopy(sample); b["case"][mode_key] = "forward"; broken.append((version, b))
        b = copy.deepcopy(sample); b["inputs"]["src"][0] = "0x1.8p+1x"; broken.append((version, b))
        b = copy.deepcopy(sample)
        name = next(iter(b["expected"]))
        b["expected"][name]["classes"] = "z" + b["expected"][name]["classes"][1:]
        broken.append((version, b))
        b = copy.deepcopy(sample); b["schema_version"] = 3 - version; broken.append((version, b))
        if version == 2:
            b = copy.deepcopy(sample); b["case"]["op"]["kind"] = "cube_norm"; broken.append((2, b))
            b = copy.deepcopy(sample); b["case"]["types"]["data"] = "float8"; broken.append((2, b))
            b = copy.deepcopy(sample); del b["case"]["types"]; broken.append((2, b))
            b = copy.deepcopy(sample); b["case"]["layout"] = "strided"; broken.append((2, b))
    for i, (version, b) in enumerate(broken):
        assert list(validators[version].iter_errors(b)), "broken fixture %d was accepted" % i
    print("%d fixtures valid (versions %s); %d broken variants rejected"
          % (total, sorted(samples), len(broken)))


if __name__ == "__main__":
    main()
