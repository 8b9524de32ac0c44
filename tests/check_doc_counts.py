#!/usr/bin/env python3
"""The corpus size the documents state is the corpus's: README.md ("fixtures/corpus/ has N
files") and docs/fixtures.md ("(N files, about M MB") against the files under fixtures/corpus.

usage: check_doc_counts.py REPO
"""
import os
import re
import sys


def main():
    repo = sys.argv[1]
    corpus = os.path.join(repo, "fixtures", "corpus")
    files = [os.path.join(d, f) for d, _, fs in os.walk(corpus) for f in fs if f.endswith(".json")]
    size_mb = sum(os.path.getsize(f) for f in files) / 1e6
    wrong = []
    readme = open(os.path.join(repo, "README.md")).read()
    m = re.search(r"`fixtures/corpus/` has (\d+) files", readme)
    if not m or int(m.group(1)) != len(files):
        wrong.append("README.md says %s files" % (m.group(1) if m else "no count of"))
    doc = open(os.path.join(repo, "docs", "fixtures.md")).read()
    m = re.search(r"`fixtures/corpus/` \((\d+) files, about ([0-9.]+) MB", doc)
    if not m or int(m.group(1)) != len(files) or abs(float(m.group(2)) - size_mb) > 0.1:
        wrong.append("docs/fixtures.md says %s" % (m.group(0) if m else "no count"))
    if wrong:
        sys.exit("the corpus has %d files, %.2f MB; %s" % (len(files), size_mb, "; ".join(wrong)))
    print("README.md and docs/fixtures.md state the corpus's %d files (%.2f MB)"
          % (len(files), size_mb))


if __name__ == "__main__":
    main()
