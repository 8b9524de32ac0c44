#!/usr/bin/env python3
"""The bnoracle command line against hostile kernels, files and environments.

Every check runs the real `bnoracle` executable and asserts the documented outcome: a clear
message and the documented exit code, never a crash, a hang, an exit 0 without a judged result,
or a lost or truncated file (docs/cli.md). Run by ctest, one test per class:

    hostile_checks.py BNORACLE KERNELS_DIR FAULTY_DIR WORK_DIR [unittest arguments, e.g. Files]
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import unittest
import xml.etree.ElementTree as ElementTree

BNORACLE = KERNELS = FAULTY = WORK = ""

# Generous limits for what must end quickly: a hang shows as a timeout of these, not as slowness.
QUICK = 60


def run(args, timeout=QUICK, **kwargs):
    """Runs bnoracle with `args`; returns (exit code, stdout, stderr) as text."""
    p = subprocess.run([BNORACLE] + args, capture_output=True, timeout=timeout, **kwargs)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def kernel(name):
    return os.path.join(KERNELS, "libbnk_%s.so" % name)


def hostile(attack):
    return os.path.join(FAULTY, "hostile_%s.so" % attack)


def workdir(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def gone(pid):
    """Whether process `pid` has ended (or is a zombie), waiting up to two seconds."""
    for _ in range(200):
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.01)
    return False


class FailClosed(unittest.TestCase):
    """No CONFORMANT (exit 0) without a judged result."""

    def test_a_filter_that_selects_nothing_judges_nothing(self):
        rc, out, err = run(["check", "--kernel", kernel("welford"), "--filter", "no_such_case"])
        self.assertEqual(rc, 5, out + err)
        self.assertIn("verdict: NOTHING JUDGED", out)
        self.assertIn("no case was run", out)

    def test_a_kernel_without_entry_points_judges_nothing(self):
        for attack in ("all_null", "no_layouts"):
            rc, out, err = run(["check", "--kernel", hostile(attack)])
            self.assertEqual(rc, 5, attack + out + err)
            self.assertIn("verdict: NOTHING JUDGED", out)

    def test_correct_refusals_alone_are_no_evidence(self):
        # Declares forward training, refuses L = 1 correctly (a pass) and answers "unsupported"
        # to everything else: it compared no value. The catalog alone shows it (the property
        # suite adds only skipped cases, and much time under the sanitizers).
        rc, out, err = run(["check", "--kernel", hostile("refuses_only"), "--no-properties"])
        self.assertEqual(rc, 5, out + err)
        self.assertIn("verdict: NOTHING JUDGED", out)
        self.assertRegex(out, r"\(\d+ skipped, 0 mistrusted, 1 passed without a compared value\)")
        self.assertRegex(out, r"general/one_value/nchw_1x3x1x1 +pass")

    def test_json_and_junit_reports_say_nothing_judged(self):
        rc, out, _ = run(["check", "--kernel", hostile("all_null"), "--report", "json"])
        self.assertEqual(rc, 5)
        summary = json.loads(out)["summary"]
        self.assertEqual(summary["verdict"], "NOTHING JUDGED")
        self.assertEqual(summary["exit_code"], 5)
        self.assertTrue(summary["unjudged"])
        rc, out, _ = run(["check", "--kernel", hostile("all_null"), "--report", "junit"])
        self.assertEqual(rc, 5)
        root = ElementTree.fromstring(out)
        failures = [f.get("type") for f in root.iter("failure")]
        self.assertEqual(failures, ["nothing-judged"])

    def test_a_declared_mode_without_a_judged_result_is_not_conformant(self):
        # The kernel declares forward training but answers "unsupported" to every problem;
        # forward inference passes. One judged mode is not enough.
        args = ["check", "--kernel", hostile("unsupported_mode"), "--filter", "exact/two_values",
                "--no-properties"]
        rc, out, err = run(args)
        self.assertEqual(rc, 5, out + err)
        self.assertIn("forward_training, which the kernel declares", out)
        self.assertNotIn("forward_inference, which", out)
        # The same run of a kernel that does not declare forward training is conformant.
        rc, out, err = run(["check", "--kernel", os.path.join(FAULTY, "faulty_none.so")] +
                           args[3:])
        self.assertEqual(rc, 0, out + err)


    def test_a_fault_recorded_by_results_comes_back_from_verify(self):
        d = workdir("recorded_fault")
        fixtures, results = os.path.join(d, "fixtures"), os.path.join(d, "results")
        self.assertEqual(run(["export", "--out", fixtures, "--filter", "layout/nc_6x3"])[0], 0)
        rc, _, err = run(["results", "--kernel", os.path.join(FAULTY, "faulty_null_deref.so"),
                          "--fixtures", fixtures, "--out", results])
        self.assertEqual(rc, 0, err)
        with open(os.path.join(results, "layout", "nc_6x3", "forward_inference.json")) as f:
            recorded = json.load(f)
        self.assertEqual((recorded["status"], recorded["fault"]), ("failed", True))
        rc, out, err = run(["verify", "--fixtures", fixtures, "--results", results])
        self.assertEqual(rc, 3, out + err)
        self.assertIn("verdict: KERNEL FAULT", out)


class PluginLoading(unittest.TestCase):
    """A library that misbehaves while loading is reported, not obeyed."""

    def test_every_loading_attack_is_a_kernel_fault_with_a_message(self):
        for attack, words in (("ctor_crash", "crashed with SIGSEGV"),
                              ("ctor_exit0", "exited with code 0"),
                              ("ctor_hang", "timed out"),
                              ("entry_crash", "crashed with SIGSEGV"),
                              ("entry_exit0", "exited with code 0"),
                              ("name_unmapped", "while its kernel table was read")):
            start = time.monotonic()
            rc, out, err = run(["check", "--kernel", hostile(attack), "--timeout", "2"])
            self.assertEqual(rc, 3, attack + out + err)
            self.assertIn(words, err, attack)
            self.assertIn("the library was not loaded", err, attack)
            self.assertLess(time.monotonic() - start, 30, attack)

    def test_destructors_cannot_change_the_verdict(self):
        # The library's destructor calls _exit(0): it must not run after the verdict (1).
        for isolation in ([], ["--no-isolation"]):
            rc, out, err = run(["check", "--kernel", hostile("dtor_exit0"), "--filter",
                                "exact/two_values", "--no-properties"] + isolation)
            self.assertEqual(rc, 1, isolation + [out, err])
            self.assertIn("verdict: NOT CONFORMANT", out)

    def test_a_crash_in_process_names_the_signal(self):
        # --no-isolation loads without the probe: the crash ends bnoracle, but not silently.
        rc, out, err = run(["check", "--kernel", hostile("ctor_crash"), "--no-isolation"])
        self.assertEqual(rc, -signal.SIGSEGV, out + err)
        self.assertIn("bnoracle: fatal signal SIGSEGV", err)

    def test_exit_in_process_is_not_an_exit_code_0(self):
        # --no-isolation loads without the probe: the library's exit(0) must not pass for success.
        rc, out, err = run(["check", "--kernel", hostile("ctor_exit0"), "--no-isolation"])
        self.assertEqual(rc, 3, out + err)
        self.assertIn("called exit() before the run finished", err)


class Processes(unittest.TestCase):
    """Processes a kernel leaves behind die with the call; floods stay bounded."""

    def test_a_process_left_behind_neither_holds_stdout_nor_survives(self):
        for isolation in ([], ["--no-isolation"]):
            pids = os.path.join(workdir("orphan"), "pids")
            env = dict(os.environ, BNORACLE_ORPHAN_PID_FILE=pids)
            start = time.monotonic()
            # capture_output reads stdout to its end: it returns only when nothing holds it.
            rc, out, err = run(["check", "--kernel", hostile("orphan"), "--filter",
                                "exact/two_values", "--no-properties"] + isolation, env=env)
            self.assertEqual(rc, 0, out + err)
            self.assertLess(time.monotonic() - start, 20, isolation)
            with open(pids) as f:
                left = [int(line) for line in f if line.strip()]
            self.assertTrue(left)
            for pid in left:
                self.assertTrue(gone(pid), "process %d outlived bnoracle %s" % (pid, isolation))

    def test_a_flooding_kernel_keeps_the_report_clean_and_bounded(self):
        p = subprocess.run([BNORACLE, "check", "--kernel", hostile("flood"), "--filter",
                            "exact/two_values", "--no-properties"],
                           capture_output=True, timeout=QUICK)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        self.assertTrue(p.stdout.startswith(b"bnoracle check: kernel 'hostile'"))
        self.assertNotIn(b"FFFF", p.stdout)
        self.assertIn(b"more bytes during this call, not shown", p.stderr)
        self.assertLess(len(p.stderr), 1 << 20)


class ReportText(unittest.TestCase):
    """Text a kernel supplies cannot break a report."""

    def test_invalid_utf8_keeps_every_report_well_formed(self):
        args = ["check", "--kernel", hostile("bad_utf8"), "--filter", "exact/two_values",
                "--no-properties"]
        rc, out, _ = run(args + ["--report", "json"])
        self.assertEqual(rc, 1)
        report = json.loads(out)
        self.assertEqual(report["kernel"]["name"], "hostile\ufffd\ufffd<&>")
        reasons = [c["reason"] for c in report["cases"] if c["verdict"] == "FAIL"]
        self.assertIn("a cut \ufffd and a lone \ufffd here", reasons[0])
        rc, out, _ = run(args + ["--report", "junit"])
        self.assertEqual(rc, 1)
        ElementTree.fromstring(out.encode())

    def test_a_message_overrun_is_named(self):
        rc, out, err = run(["check", "--kernel", hostile("message_overrun"), "--filter",
                            "exact/two_values", "--no-properties"])
        self.assertEqual(rc, 3, out + err)
        self.assertIn("wrote past the end of the message buffer", out)

    def test_a_file_name_that_is_not_utf8_keeps_json_valid(self):
        d = workdir("names").encode()
        fixtures = os.path.join(d, b"bad\xffname")
        os.makedirs(fixtures)
        rc, _, err = run(["export", "--out", os.fsdecode(fixtures), "--filter", "layout/nc_6x3"])
        self.assertEqual(rc, 0, err)
        p = subprocess.run([os.fsencode(BNORACLE), b"verify", b"--fixtures", fixtures,
                            b"--results", fixtures + b"-results", b"--report", b"json"],
                           capture_output=True, timeout=QUICK)
        self.assertEqual(p.returncode, 1, p.stderr)
        json.loads(p.stdout)


class Files(unittest.TestCase):
    """No user file lost, no truncated file, every write failure reported."""

    def test_export_refuses_to_replace_a_file_it_did_not_write(self):
        d = workdir("export_user")
        mine = os.path.join(d, "layout", "nc_6x3", "forward_inference.json")
        os.makedirs(os.path.dirname(mine))
        with open(mine, "w") as f:
            f.write("my notes\n")
        rc, _, err = run(["export", "--out", d])
        self.assertEqual(rc, 2, err)
        self.assertIn("bnoracle did not write", err)
        with open(mine) as f:
            self.assertEqual(f.read(), "my notes\n")
        written = [os.path.join(r, n) for r, _, ns in os.walk(d) for n in ns]
        self.assertEqual(written, [mine], "nothing else is written")
        # Its own files it replaces; --force replaces the user's too.
        self.assertEqual(run(["export", "--out", d, "--force"])[0], 0)
        self.assertEqual(run(["export", "--out", d])[0], 0)
        with open(mine) as f:
            self.assertEqual(json.load(f)["schema"], "bnoracle.fixture")

    def test_export_into_a_file_or_an_unwritable_place_is_an_environment_error(self):
        d = workdir("export_bad")
        plain = os.path.join(d, "plain")
        open(plain, "w").close()
        rc, _, err = run(["export", "--out", plain])
        self.assertEqual(rc, 2, err)
        self.assertIn("Not a directory", err)
        rc, _, err = run(["export", "--out", "/proc/self/no/such/place"])
        self.assertEqual(rc, 2, err)
        self.assertNotIn("internal error", err)

    def test_a_file_size_limit_leaves_no_truncated_results(self):
        d = workdir("results_full")
        fixtures = os.path.join(d, "fixtures")
        self.assertEqual(run(["export", "--out", fixtures])[0], 0)
        out = os.path.join(d, "results")

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        rc, _, err = run(["results", "--kernel", kernel("welford"), "--fixtures", fixtures,
                          "--out", out], preexec_fn=limit)
        self.assertEqual(rc, 2, err)
        self.assertIn("File too large", err)
        self.assertNotIn("results written", err)
        for root, _, names in os.walk(out):
            for n in names:
                self.assertFalse(n.startswith("."), "a temporary file was left: " + n)
                with open(os.path.join(root, n)) as f:
                    json.load(f)  # every file that exists is whole

    def test_a_report_that_cannot_be_written_is_an_error(self):
        args = ["check", "--kernel", kernel("welford"), "--filter", "exact/basic",
                "--no-properties"]
        rc, _, err = run(args + ["--output", "/dev/full"])
        self.assertEqual(rc, 2, err)
        self.assertIn("the report is lost", err)
        self.assertIn("No space left on device", err)
        with open("/dev/full", "w") as full:
            p = subprocess.run([BNORACLE] + args, stdout=full, stderr=subprocess.PIPE,
                               timeout=QUICK)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = subprocess.run([BNORACLE] + args, stderr=subprocess.PIPE, timeout=QUICK,
                           preexec_fn=lambda: os.close(1))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"Bad file descriptor", p.stderr)

    def test_a_report_file_is_replaced_whole(self):
        d = workdir("report")
        path = os.path.join(d, "report.json")
        with open(path, "w") as f:
            f.write("previous report\n")
        rc, _, _ = run(["check", "--kernel", kernel("welford"), "--filter", "exact/basic",
                        "--no-properties", "--report", "json", "--output", path])
        self.assertEqual(rc, 0)
        with open(path) as f:
            self.assertEqual(json.load(f)["summary"]["verdict"], "CONFORMANT")
        self.assertEqual(os.listdir(d), ["report.json"])

    def test_a_report_through_a_link_reaches_its_target(self):
        d = workdir("report_link")
        args = ["check", "--kernel", kernel("welford"), "--filter", "exact/basic",
                "--no-properties", "--report", "json", "--output"]
        real, link = os.path.join(d, "real.json"), os.path.join(d, "link.json")
        with open(real, "w") as f:
            f.write("previous report\n")
        os.symlink("real.json", link)
        self.assertEqual(run(args + [link])[0], 0)
        self.assertTrue(os.path.islink(link), "the link was replaced")
        with open(real) as f:
            self.assertEqual(json.load(f)["summary"]["verdict"], "CONFORMANT")
        # /dev/stdout is the caller's standard output, written in place.
        redirected = os.path.join(d, "redirected.json")
        with open(redirected, "w") as f:
            p = subprocess.run([BNORACLE] + args + ["/dev/stdout"], stdout=f,
                               stderr=subprocess.PIPE, timeout=QUICK)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(redirected) as f:
            self.assertEqual(json.load(f)["summary"]["verdict"], "CONFORMANT")

    def test_a_file_where_an_export_needs_a_folder_stops_it_before_writing(self):
        d = workdir("export_folder")
        with open(os.path.join(d, "layout"), "w") as f:
            f.write("not a folder\n")
        rc, _, err = run(["export", "--out", d])
        self.assertEqual(rc, 2, err)
        self.assertIn("a file where a folder is needed", err)
        self.assertEqual(sorted(os.listdir(d)), ["layout"], "nothing was written")

    def test_a_symlink_loop_is_an_input_error(self):
        d = workdir("loop")
        os.symlink("b.json", os.path.join(d, "a.json"))
        os.symlink("a.json", os.path.join(d, "b.json"))
        rc, _, err = run(["verify", "--fixtures", d, "--results", d])
        self.assertEqual(rc, 2, err)
        self.assertIn("Too many levels of symbolic links", err)


class CommandLine(unittest.TestCase):
    """CLI11: help everywhere, --opt=value, suggestions, valid values listed."""

    COMMANDS = ("check", "identify", "export", "results", "verify", "example", "conventions",
                "budgets", "version", "help")

    def test_every_command_has_help(self):
        for command in self.COMMANDS:
            rc, out, err = run([command, "--help"])
            self.assertEqual(rc, 0, command + err)
            self.assertIn("Usage: bnoracle " + command, out)
        rc, out, _ = run(["--help"])
        self.assertEqual(rc, 0)
        for command in self.COMMANDS:
            self.assertIn(command, out)

    def test_option_equals_value(self):
        rc, out, err = run(["check", "--kernel=" + kernel("welford"), "--filter=exact/basic",
                            "--no-properties", "--level=strict"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("gate level strict", out)

    def test_unknown_options_and_commands_get_a_suggestion(self):
        rc, _, err = run(["check", "--kernel", kernel("welford"), "--verbos"])
        self.assertEqual(rc, 2)
        self.assertIn("--verbos", err)
        self.assertIn("did you mean --verbose?", err)
        self.assertNotIn("needs a value", err)
        rc, _, err = run(["chekc"])
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'chekc' (did you mean 'check'?)", err)

    def test_an_invalid_value_lists_the_valid_ones(self):
        rc, _, err = run(["check", "--convention", "pytroch"])
        self.assertEqual(rc, 2)
        self.assertIn("named ones: pytorch, cudnn, tensorflow, keras, onnx, flax, miopen, none; "
                      "or state its fields", err)
        # Fields are checked too, and the message says which one is wrong.
        rc, _, err = run(["check", "--convention", "momentum=new,running_var=sideways"])
        self.assertEqual(rc, 2)
        self.assertIn("running_var=sideways: expected biased or unbiased", err)
        rc, _, err = run(["check", "--level", "bogus"])
        self.assertEqual(rc, 2)
        self.assertIn("strict,standard,lenient", err)

    def test_timeouts_below_the_minimum_are_refused(self):
        for value in ("0.0001", "0", "-1", "nan", "abc"):
            rc, _, err = run(["check", "--kernel", kernel("welford"), "--timeout", value])
            self.assertEqual(rc, 2, value + err)
            self.assertIn("--timeout", err)

    def test_reproduction_lines_carry_the_timeout(self):
        rc, out, _ = run(["check", "--kernel", os.path.join(FAULTY, "faulty_null_deref.so"),
                          "--filter", "exact/two_values", "--no-properties", "--timeout", "5"])
        self.assertEqual(rc, 3)
        repro = [line for line in out.splitlines() if "repro:" in line]
        self.assertTrue(repro)
        self.assertTrue(all("--timeout 5" in line for line in repro), repro)


def main():
    global BNORACLE, KERNELS, FAULTY, WORK
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    BNORACLE, KERNELS, FAULTY, WORK = sys.argv[1:5]
    os.makedirs(WORK, exist_ok=True)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    unittest.main(argv=[sys.argv[0]] + sys.argv[5:], verbosity=2)


if __name__ == "__main__":
    main()
