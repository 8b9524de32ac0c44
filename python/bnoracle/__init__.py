"""bnoracle: the exact reference and the judge of batch norm and its family, on NumPy arrays.

    import numpy as np, bnoracle
    x = np.random.default_rng(0).normal(size=(8, 4, 5, 5)).astype(np.float32)
    ref = bnoracle.reference("batch_norm", "forward_training", x, gamma=g, beta=b)
    ref.golden("dst")                       # the exact output, correctly rounded to float32
    verdict = bnoracle.judge("batch_norm", "forward_training", x, {"dst": y}, gamma=g, beta=b)
    print(verdict)                          # per output: the worst element, its error, the bound
    bnoracle.assert_conformant(...)         # the same, raising AssertionError on a failure

Tensors are NumPy arrays, PyTorch tensors (any device, bfloat16 included), or anything
numpy.asarray or numpy.from_dlpack takes, in logical order, shape (N, C, spatial...) with 0 to 3
spatial axes. The op is "batch_norm",
"layer_norm(axes=1)", "rms_norm(axes=1,weight_offset)", "group_norm(groups=4)",
"instance_norm(running_stats)"; the mode one of MODES; the level one of LEVELS. Every value must
be one of its role's format in `types` ("float32", "cudnn_mixed", "bf16_mixed", ... or
"data=float16,parameters=float32,statistics=float32"; docs/reference.md, "Data types"): float16
and bfloat16 arrays and tensors convert exactly (a float32 array may also hold bfloat16 values),
and a float16 or bfloat16 src sets the data type when `types` is not given.
docs/python.md walks through it; docs/error-model.md says what each bound is.
"""

from __future__ import annotations

import numpy as np

from . import _bnoracle

__all__ = ["LEVELS", "MODES", "Reference", "OutputVerdict", "Verdict", "reference", "judge",
           "assert_conformant", "Unsupported", "Refused", "Report", "check"]

LEVELS = ("strict", "standard", "lenient")
MODES = ("forward_training", "forward_inference", "backward_training", "backward_inference")


def _widen_bfloat16(bits):
    """bfloat16 values given by their 16 bits, as float32 (exact: a bfloat16 is the top half of
    a float32)."""
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _as_numpy(x):
    """`x` as a NumPy array and the 16-bit format it arrived in ("float16", "bfloat16" or None).

    Takes NumPy arrays and anything numpy.asarray takes; PyTorch tensors on any device, with or
    without requires_grad (detached and copied to the CPU; bfloat16, which NumPy lacks, widened
    exactly to float32); other tensors through DLPack (numpy.from_dlpack: JAX, CuPy on the CPU);
    and NumPy arrays of ml_dtypes' bfloat16 (JAX's), widened exactly."""
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":
            import torch  # present: x is one of its tensors
            return _widen_bfloat16(t.contiguous().view(torch.int16).numpy()), "bfloat16"
        a = t.numpy()
    elif not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__"):
        try:
            a = np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError, AttributeError):
            a = np.asarray(x)
    else:
        a = np.asarray(x)
    if a.dtype.name == "bfloat16":
        return _widen_bfloat16(a), "bfloat16"
    return a, ("float16" if a.dtype == np.float16 else None)


def _as_float32(x):
    """`x` (any array or tensor _as_numpy takes) as a contiguous float32 NumPy array: float16
    and bfloat16 values convert exactly."""
    return np.ascontiguousarray(_as_numpy(x)[0], dtype=np.float32)


def _array(x):
    return None if x is None else _as_float32(x)


def _problem(op, mode, src, diff_dst=None, gamma=None, beta=None, running_mean=None,
             running_var=None, num_batches_tracked=0, eps=1e-5, momentum=0.1,
             convention="pytorch", types=None, tier="general"):
    src_array, src_format = _as_numpy(src)
    if types is None:
        types = f"data={src_format}" if src_format else "float32"
    return _bnoracle.Problem(op, mode, _array(src_array), _array(diff_dst), _array(gamma),
                             _array(beta), _array(running_mean), _array(running_var),
                             int(num_batches_tracked), float(eps),
                             None if momentum is None else float(momentum), convention, types,
                             tier)


class Reference:
    """The exact results of one problem: goldens, exact values and bounds per output."""

    def __init__(self, problem):
        self._p = problem

    @property
    def outputs(self):
        """The outputs the mode produces: "dst", "mean", "invstd", "running_var", ..."""
        return list(self._p.outputs)

    @property
    def refusal(self):
        """Non-empty when the convention refuses the problem (then no output is defined)."""
        return self._p.refusal

    @property
    def problem(self):
        """The problem in one line, as bnoracle's reports print it."""
        return self._p.description

    def golden(self, name):
        """The exact value of every element correctly rounded to the output's format (float32
        array, shaped as the output)."""
        return self._p.goldens(name)

    def bound(self, name, level="standard"):
        """The error model's bound on |kernel - exact| of every element at `level` (float64;
        inf where the model claims nothing)."""
        return self._p.bounds(name, level)

    def exact(self, name, digits=45):
        """The exact values as decimal strings ("undefined"/"unspecified" where none), flat."""
        return self._p.exact(name, digits)


def reference(op, mode, src, **inputs):
    """The exact reference of a problem. `inputs`: diff_dst, gamma, beta, running_mean,
    running_var, num_batches_tracked, eps, momentum (None: cumulative average), convention,
    types, tier ("general", or "exact" for data whose statistics are exact by construction)."""
    return Reference(_problem(op, mode, src, **inputs))


class OutputVerdict:
    """One output judged: whether every element is within its bound at each level, and the
    worst element (where, got, expected, exact value, error and bound in ulps)."""

    def __init__(self, fields, level):
        self.__dict__.update(fields)
        self.level = level

    def __bool__(self):
        return bool(self.passed[self.level])

    def __str__(self):
        state = "ok" if self else "FAILS"
        if self.class_failure:
            return f"{self.name}: {state} at {self.level}: {self.class_failure}"
        return (f"{self.name}: {state} at {self.level}, worst/bound {self.worst_ratio:.3g}: "
                f"{self.text}")


class Verdict:
    """The judgement of a kernel's outputs on one problem at one level."""

    def __init__(self, problem, outputs, level, repro):
        self.problem = problem
        self.outputs = outputs
        self.level = level
        self.repro = repro

    @property
    def passed(self):
        return all(self.outputs)

    def __bool__(self):
        return self.passed

    @property
    def best_level(self):
        """The strictest level every output meets, or None."""
        for level in LEVELS:
            if all(o.passed[level] for o in self.outputs):
                return level
        return None

    @property
    def failures(self):
        return [o for o in self.outputs if not o]

    def __str__(self):
        head = (f"{'PASS' if self else 'FAIL'} at {self.level} (best level met: "
                f"{self.best_level or 'none'}); problem: {self.problem}")
        return "\n".join([head] + [f"  {o}" for o in self.outputs] + [f"  repro: {self.repro}"])


def judge(op, mode, src, outputs, level="standard", **inputs):
    """Judges a kernel's `outputs` ({"dst": array, "running_var": array, ...}) of one problem
    against the exact reference at `level`. Every output given is judged; one the mode does not
    produce raises KeyError, a wrong number of values ValueError."""
    if level not in LEVELS:
        raise ValueError(f"level: {level!r} is not one of {LEVELS}")
    if not outputs:
        raise ValueError("outputs: nothing to judge")
    p = _problem(op, mode, src, **inputs)
    judged = [OutputVerdict(p.judge(name, _array(values), level), level)
              for name, values in outputs.items()]
    shape = "x".join(str(d) for d in _as_numpy(src)[0].shape)
    # The call with its scalar options; the tensors are the caller's.
    scalars = [f"{k}={v!r}" for k, v in sorted(inputs.items())
               if not isinstance(v, (np.ndarray, list)) and not hasattr(v, "shape")]
    tensors = [k for k, v in sorted(inputs.items()) if k not in {s.split("=")[0] for s in scalars}]
    args = ", ".join([repr(op), repr(mode), "src", "outputs", f"level={level!r}"]
                     + scalars + [f"{k}={k}" for k in tensors])
    repro = f"bnoracle.judge({args})  # src of shape {shape}"
    return Verdict(p.description, judged, level, repro)


def assert_conformant(op, mode, src, outputs, level="standard", **inputs):
    """judge(), raising AssertionError with the verdict (every output, the worst element in
    decimal and hex, its bound, a reproduction line) when an output fails."""
    verdict = judge(op, mode, src, outputs, level=level, **inputs)
    if not verdict:
        raise AssertionError(str(verdict))
    return verdict


class Unsupported(Exception):
    """Raised by a kernel's method for a problem it does not handle: the case is skipped."""


class Refused(Exception):
    """Raised by a kernel's method for a problem it refuses as invalid (one value per channel in
    training): right where the convention refuses it, a failure elsewhere."""


class Report:
    """The result of check(): the run's verdict, its counts, and the reports bnoracle check
    writes, as text (also str(report)), json, junit and html."""

    def __init__(self, fields):
        self._summary = fields.pop("summary")
        self._rendered = {}
        self.__dict__.update(fields)

    def _render(self, fmt):
        if fmt not in self._rendered:
            self._rendered[fmt] = self._summary.render(fmt)
        return self._rendered[fmt]

    @property
    def text(self):
        """The text report, as bnoracle check prints it."""
        return self._render("text")

    @property
    def json(self):
        """The JSON report (docs/cli.md; fixtures/schema/bnoracle.check.v1.schema.json)."""
        return self._render("json")

    @property
    def junit(self):
        """The JUnit XML report."""
        return self._render("junit")

    @property
    def html(self):
        """The self-contained HTML report."""
        return self._render("html")

    @property
    def conformant(self):
        return self.verdict == "CONFORMANT"

    def __bool__(self):
        return self.conformant

    def __str__(self):
        return self.text

    def write(self, path):
        """Writes the report whose format the file's extension names (.txt, .json, .xml,
        .html)."""
        formats = {".txt": self.text, ".json": self.json, ".xml": self.junit, ".html": self.html}
        for ext, text in formats.items():
            if str(path).endswith(ext):
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                return
        raise ValueError(f"{path}: the extension names no report format ({', '.join(formats)})")


def check(kernel, level="standard", seed=1, property_cases=100, catalog=True, properties=True,
          filter="", op=None, types=None, isolate=True, timeout=20.0, jobs=None):
    """Runs bnoracle's conformance suite (the case catalog, the fold and SyncBN-merge cases a
    kernel does not provide being skipped, and the property suite) in this process against a
    kernel written in Python, with the diagnosis of any failure. Returns a Report.

    The kernel is an object with a method per mode it provides (forward_training,
    forward_inference, backward_training, backward_inference), each taking a namespace with the
    problem (op, mode, types, eps, momentum, track_running, num_batches_tracked) and its inputs
    as float32 arrays in logical order (src, diff_dst: shape (N, C, spatial...); gamma, beta,
    running_mean, running_var, save_mean, save_stat: vectors; None where absent), and returning
    a dict of its outputs by name (dst, save_mean, save_stat, running_mean, running_var,
    num_batches_tracked, diff_src, diff_gamma, diff_beta). Optional attributes describe it: name,
    version, convention ("pytorch"), ops (["batch_norm"]), types (["float32"]), saves ("none",
    "mean_invstd", "mean_var"), updates_running (True), supports_cumulative (False).

    isolate=True runs the calls in a worker process forked at the first call, as bnoracle check
    isolates a plugin: a kernel that crashes the interpreter, hangs past `timeout` seconds, or
    writes its inputs becomes a FAULT of that result (and the worker is forked again). A CUDA
    context does not survive fork: isolate=False for GPU kernels (docs/python.md).

    jobs: processes checking properties at once (helpers forked at the start check every Nth
    property while this process runs the catalog; the results are those of one process). None:
    every core when isolated, 1 with isolate=False (a GPU kernel must not be forked)."""
    if jobs is None:
        jobs = 0 if isolate else 1
    return Report(_bnoracle.check(kernel, level, seed, property_cases, catalog, properties,
                                  filter, op, types, isolate, float(timeout), int(jobs)))
