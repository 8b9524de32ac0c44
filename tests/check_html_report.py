"""The HTML report renders in a browser and draws what its data says.

Runs `bnoracle check` with --report html (a defective mutant, whose failures open with their
plots, and a correct kernel with every result opened through the #all address), loads each page in
headless Chromium (--dump-dom: the document after its script ran) and checks that
- the page rendered (body data-rendered="yes"), with the verdict and the kernel in the summary;
- every drawn plot holds exactly the points its output's embedded profile has: one circle per
  measured run of elements and per statistic group, one bar per histogram bin;
- every output with a profile is drawn where its result is open, and nothing else is drawn;
- the diagnosis box shows one paragraph per defect class the data lists (none for a correct
  kernel, at least one for the mutant);
- a failed property's shrunk counterexample is drawn as one table per tensor, with the rows and
  columns its shape gives (at most 64 x 32);
- the page loads nothing from anywhere (no src or href attribute, no link element).

Usage: check_html_report.py BNORACLE KERNEL_DIR MUTANT_DIR WORK_DIR [CHROMIUM]
Exit 77 (skipped) when no Chromium is installed.
"""
import html.parser
import json
import os
import shutil
import subprocess
import sys


class Dom(html.parser.HTMLParser):
    """The elements of a dumped DOM, as (tag, attributes, parent index) with the data script."""

    def __init__(self):
        super().__init__()
        self.nodes = []
        self.stack = []
        self.data_json = None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        parent = self.stack[-1] if self.stack else -1
        self.nodes.append((tag, dict(attrs), parent))
        if tag == "script" and dict(attrs).get("id") == "bnoracle-data":
            self._in_data = True
            self.data_json = ""
        if tag not in ("meta", "br", "hr", "img", "input", "link"):
            self.stack.append(len(self.nodes) - 1)

    def handle_startendtag(self, tag, attrs):
        parent = self.stack[-1] if self.stack else -1
        self.nodes.append((tag, dict(attrs), parent))

    def handle_endtag(self, tag):
        self._in_data = False
        while self.stack:
            i = self.stack.pop()
            if self.nodes[i][0] == tag:
                break

    def handle_data(self, data):
        if self._in_data:
            self.data_json += data

    def ancestors(self, i):
        p = self.nodes[i][2]
        while p >= 0:
            yield p
            p = self.nodes[p][2]

    def within(self, i, tag, attr=None, value=None):
        """The nearest ancestor of node i with that tag (and attribute value), or None."""
        for a in self.ancestors(i):
            t, attrs, _ = self.nodes[a]
            if t == tag and (attr is None or attrs.get(attr) == value):
                return a
        return None


def render(chromium, page, fragment):
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--virtual-time-budget=5000", "--dump-dom",
         "file://" + os.path.abspath(page) + fragment],
        capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or "<body" not in out.stdout:
        sys.exit(f"chromium could not render {page}: {out.stderr[-2000:]}")
    return out.stdout


def tensors_of(reason):
    """The tensors of a property's shrunk counterexample: (name, rows, columns) as the page draws
    them, from the problem line's shape and the "name = [...]" lines."""
    at = reason.find("shrunk counterexample:")
    if at < 0:
        return []
    lines = reason[at:].split("\n")[1:]
    dims = [int(d) for d in lines[0].split()[1].split("x")]
    n, c = dims[0], dims[1] if len(dims) > 1 else 1
    s = 1
    for d in dims[2:]:
        s *= d
    out = []
    for line in lines[1:]:
        stripped = line.strip()
        if " = [" not in stripped or not stripped.endswith("]"):
            continue
        name, values = stripped.split(" = [", 1)
        count = len(values[:-1].split(", ")) if values[:-1] else 0
        per_element = count > 0 and count == n * c * s
        rows, cols = (n * c, s) if per_element else (1, count)
        out.append((name, min(rows, 64), min(cols, 32)))
    return out


def check_page(chromium, page, fragment, expect_open, needs_plots=True):
    text = open(page, encoding="utf-8").read()
    dom = Dom()
    dom.feed(render(chromium, page, fragment))
    failures = []
    body = [a for t, a, _ in dom.nodes if t == "body"]
    if not body or body[0].get("data-rendered") != "yes":
        failures.append("the page did not finish rendering (body data-rendered)")
    data = json.loads(dom.data_json)
    for t, a, _ in dom.nodes:
        if t == "link" or "src" in a or "href" in a:
            failures.append(f"the page refers to something outside it: <{t} {a}>")
    for needle in ("https://", "<link"):
        if needle in text:
            failures.append(f"the file contains {needle!r}")

    # Every plot, by result index and output name.
    drawn = {}
    for i, (tag, attrs, _) in enumerate(dom.nodes):
        if tag != "svg" or "data-kind" not in attrs:
            continue
        plots = dom.within(i, "div", None, None)
        case = dom.within(i, "details")
        if plots is None or case is None:
            failures.append("a plot outside a result")
            continue
        output = dom.nodes[plots][1].get("data-output")
        index = int(dom.nodes[case][1]["data-index"])
        marks = sum(1 for j, (t, _, _) in enumerate(dom.nodes)
                    if t in ("circle", "rect") and dom.within(j, "svg") == i)
        drawn[(index, output, attrs["data-kind"])] = marks

    opened = 0
    expected = {}
    for index, case in enumerate(data["cases"]):
        if not expect_open(case):
            continue
        opened += 1
        for o in case["outputs"]:
            p = o.get("profile")
            if p is None:
                continue
            expected[(index, o["name"], "elements")] = sum(v is not None for v in p["elements"])
            if p["groups"]:
                expected[(index, o["name"], "groups")] = sum(v is not None for v in p["groups"])
            expected[(index, o["name"], "histogram")] = len(p["histogram"])
    if needs_plots and not expected:
        failures.append("no open result has a profile to draw")
    for key, count in expected.items():
        if key not in drawn:
            failures.append(f"{key} is not drawn")
        elif drawn[key] != count:
            failures.append(f"{key} holds {drawn[key]} points; its data has {count}")
    for key in drawn.keys() - expected.keys():
        failures.append(f"{key} is drawn but its result should be closed")
    # A failed property's counterexample: one table per tensor, with its rows and columns.
    for index, case in enumerate(data["cases"]):
        if case["mode"] != "property" or case["verdict"] != "FAIL":
            continue
        want = tensors_of(case["reason"])
        tables = [i for i, (t, a, _) in enumerate(dom.nodes) if t == "table" and "data-tensor" in a
                  and dom.within(i, "details", "data-index", str(index)) is not None]
        got = []
        for i in tables:
            rows = [j for j, (t, _, _) in enumerate(dom.nodes) if t == "tr" and dom.within(j, "table") == i]
            cells = sum(1 for j, (t, _, _) in enumerate(dom.nodes) if t == "td" and dom.within(j, "table") == i)
            cols = cells // (len(rows) - 1) if len(rows) > 1 else 0
            got.append((dom.nodes[i][1]["data-tensor"], len(rows) - 1, cols))
        if not want:
            failures.append(f"{case['case']}: no counterexample tensor in the reason")
        if got != want:
            failures.append(f"{case['case']}: tables {got}, counterexample {want}")
    # The diagnosis: one paragraph per class the report's data lists, and no box without one.
    boxes = [i for i, (t, a, _) in enumerate(dom.nodes) if t == "div" and a.get("id") == "diagnosis"]
    paragraphs = sum(1 for j, (t, _, parent) in enumerate(dom.nodes)
                     if t == "p" and boxes and parent == boxes[0])
    if len(data.get("diagnosis", [])) != paragraphs or bool(boxes) != bool(data.get("diagnosis")):
        failures.append(f"the diagnosis box shows {paragraphs} classes; the data lists "
                        f"{len(data.get('diagnosis', []))}")
    summary = "".join(a.get("class", "") for t, a, _ in dom.nodes if t == "span")
    if "verdict" not in summary:
        failures.append("no verdict badge in the page")
    return failures, opened, len(drawn)


def main():
    bnoracle, kernels, mutants, work = sys.argv[1:5]
    chromium = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
    chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no Chromium (Debian package chromium): skipped")
        return 77
    os.makedirs(work, exist_ok=True)
    runs = [
        # A defective kernel: its failures open, with their plots, the rest stay closed.
        ("mutant", os.path.join(mutants, "libbnm_eps_outside_sqrt.so"), ["--filter", "exact/"],
         "", lambda c: c["verdict"] in ("FAIL", "FAULT"), 1),
        # A correct kernel with every result opened.
        ("correct", os.path.join(kernels, "libbnk_pairwise.so"),
         ["--filter", "general/", "--no-properties"], "#all", lambda c: True, 0),
        # A failed property: its shrunk counterexample drawn as tables.
        ("property", os.path.join(mutants, "libbnm_unbiased_normalization.so"),
         ["--properties-only", "--filter", "recovery", "--property-cases", "30"], "",
         lambda c: c["verdict"] in ("FAIL", "FAULT"), 1),
    ]
    failures = []
    for name, kernel, options, fragment, expect_open, code in runs:
        out_dir = os.path.join(work, name)
        shutil.rmtree(out_dir, ignore_errors=True)
        r = subprocess.run([bnoracle, "check", "--kernel", kernel, *options, "--quiet",
                            "--report", "html,json", "--output-dir", out_dir],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != code:
            failures.append(f"{name}: bnoracle check exited {r.returncode}, not {code}: "
                            f"{r.stderr[-2000:]}")
            continue
        page = os.path.join(out_dir, "report.html")
        found, opened, drawn = check_page(chromium, page, fragment, expect_open,
                                          needs_plots=name != "property")
        classes = [d["class"] for d in json.load(open(os.path.join(out_dir, "report.json")))["diagnosis"]]
        if name == "property":
            pass  # a property names a class only where it tests one thing; recovery does not
        elif (name == "mutant") != bool(classes) or (classes and classes[0] != "epsilon"):
            found.append(f"the diagnosis lists {classes}")
        failures += [f"{name}: {f}" for f in found]
        print(f"{name}: {opened} results open, {drawn} plots drawn, "
              f"{os.path.getsize(page)} bytes")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
