"""The HTML report renders in a browser and draws what its data says.

Runs `bnoracle check` with --report html (a defective mutant, whose failures open with their
plots, and a correct kernel with every result opened through the #all address), loads each page in
headless Chromium (--dump-dom: the document after its script ran) and checks that
- the page rendered (body data-rendered="yes"), with the verdict and the kernel in the summary;
- every drawn plot holds exactly the points its output's embedded profile has: one circle per
  measured run of elements and per statistic group, one bar per histogram bin;
- every output with a profile is drawn where its result is open, and nothing else is drawn;
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


def check_page(chromium, page, fragment, expect_open):
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
    if not expected:
        failures.append("no open result has a profile to draw")
    for key, count in expected.items():
        if key not in drawn:
            failures.append(f"{key} is not drawn")
        elif drawn[key] != count:
            failures.append(f"{key} holds {drawn[key]} points; its data has {count}")
    for key in drawn.keys() - expected.keys():
        failures.append(f"{key} is drawn but its result should be closed")
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
        found, opened, drawn = check_page(chromium, page, fragment, expect_open)
        failures += [f"{name}: {f}" for f in found]
        print(f"{name}: {opened} results open, {drawn} plots drawn, "
              f"{os.path.getsize(page)} bytes")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
