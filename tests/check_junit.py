#!/usr/bin/env python3
"""A JUnit report of `bnoracle check --report junit` holds what the common readers require.

The rules are those of Jenkins' xunit plugin schema junit-10.xsd (the elements and attributes it
allows, the required ones, the SUREFIRE_TIME pattern of times), which GitLab's and GitHub's JUnit
readers accept too, and bnoracle's own: one <testsuite>, its counts equal to its test cases, the
run's seed and level in <properties>, every property in a test class of its own.

usage: check_junit.py REPORT.xml [--expect failure|error|skipped ...]
Exit 0 when the report holds, 1 with the broken rules listed.
"""
import re
import sys
import xml.etree.ElementTree as ET

# junit-10.xsd: the attributes each element may carry, and those it must.
ALLOWED = {
    "testsuites": {"name", "time", "tests", "failures", "errors"},
    "testsuite": {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp",
                  "hostname", "id", "package", "file", "log", "url"},
    "properties": set(),
    "property": {"name", "value"},
    "testcase": {"name", "time", "classname", "group"},
    "failure": {"type", "message"},
    "error": {"type", "message"},
    "skipped": {"type", "message"},
    "system-out": set(),
    "system-err": set(),
}
REQUIRED = {
    "testsuite": {"name", "tests", "failures", "errors"},
    "property": {"name", "value"},
    "testcase": {"name"},
}
CHILDREN = {
    "testsuites": {"testsuite"},
    "testsuite": {"testsuite", "properties", "testcase", "system-out", "system-err"},
    "properties": {"property"},
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"},
}
# SUREFIRE_TIME, the type of the time attributes of <testsuite> and <testsuites>.
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")


def main():
    path, expect = sys.argv[1], []
    if "--expect" in sys.argv:
        expect = sys.argv[sys.argv.index("--expect") + 1:]
    root = ET.parse(path).getroot()
    broken = []

    def walk(el):
        allowed = ALLOWED.get(el.tag)
        if allowed is None:
            broken.append("element <%s> is not in junit-10.xsd" % el.tag)
            return
        for a in el.attrib:
            if a not in allowed:
                broken.append("<%s> has attribute %s, which junit-10.xsd does not allow" % (el.tag, a))
        for a in REQUIRED.get(el.tag, ()):
            if a not in el.attrib:
                broken.append("<%s> lacks the required attribute %s" % (el.tag, a))
        if el.tag in ("testsuite", "testsuites") and "time" in el.attrib:
            if not SUREFIRE_TIME.fullmatch(el.get("time")):
                broken.append("<%s time=%r> is not a SUREFIRE_TIME" % (el.tag, el.get("time")))
        for child in el:
            if child.tag not in CHILDREN.get(el.tag, set()):
                broken.append("<%s> may not contain <%s>" % (el.tag, child.tag))
            walk(child)

    if root.tag != "testsuites":
        broken.append("the root is <%s>, not <testsuites>" % root.tag)
    walk(root)
    suites = root.findall("testsuite")
    if len(suites) != 1:
        broken.append("%d <testsuite> elements, expected one" % len(suites))
    for suite in suites:
        cases = suite.findall("testcase")
        counts = {k: sum(1 for c in cases if c.find(k) is not None)
                  for k in ("failure", "error", "skipped")}
        for attr, n in (("tests", len(cases)), ("failures", counts["failure"]),
                        ("errors", counts["error"]), ("skipped", counts["skipped"])):
            if suite.get(attr) != str(n):
                broken.append("testsuite %s=%s, but it holds %d" % (attr, suite.get(attr), n))
        for attr in ("tests", "failures", "errors"):
            if root.get(attr) != suite.get(attr):
                broken.append("testsuites %s=%s differs from its testsuite's %s"
                              % (attr, root.get(attr), suite.get(attr)))
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        for name in ("seed", "level", "kernel", "types"):
            if not props.get(name):
                broken.append("<properties> lacks %s" % name)
        for c in cases:
            t = c.get("time", "")
            if not re.fullmatch(r"[0-9]+\.[0-9]+", t):
                broken.append("testcase %r: time %r is not fixed-point seconds" % (c.get("name"), t))
            if not c.get("classname"):
                broken.append("testcase %r has no classname" % c.get("name"))
        properties = [c for c in cases if c.get("name", "").startswith("property/")]
        classes = {c.get("classname") for c in properties}
        if len(classes) != len(properties):
            broken.append("%d properties share %d test classes" % (len(properties), len(classes)))
        for p in properties:
            name = p.get("name").split()[0][len("property/"):]
            if not p.get("classname").endswith(".property." + name):
                broken.append("property %s is in class %s" % (name, p.get("classname")))
        for kind in expect:
            if counts.get(kind, 0) == 0:
                broken.append("expected at least one <%s>, found none" % kind)
    if broken:
        print("%s breaks the JUnit rules:\n  %s" % (path, "\n  ".join(broken)))
        return 1
    print("%s: valid JUnit (%d test cases)" % (path, sum(len(s.findall("testcase")) for s in suites)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
