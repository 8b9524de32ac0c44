"""Which code path PyTorch's CPU batch norm takes, and how it sums (evidence for FINDINGS.md).

Run with the Python that has the same libtorch as the plugin (Debian: /usr/bin/python3.11 with
python3-torch 1.13.1). Compares ATen's save_mean bit for bit with simulated summation orders:
  float_seq  -- one float32 accumulator per channel, rows of the (L, C) matrix added in order,
                then sum / L in double, rounded to float32 (batch_norm_cpu_collect_stats_
                channels_last_impl with one thread);
  double_seq -- one double accumulator, sequential (batch_norm_cpu_collect_stats_contiguous_impl);
  at::mean   -- torch.mean over (N, spatial...) (the non-contiguous path of
                batch_norm_cpu_update_stats_template).
"""
import numpy as np
import torch

torch.set_num_threads(1)
rng = np.random.default_rng(11)


def float_seq(x2d):
    acc = np.zeros(x2d.shape[1], np.float32)
    for row in x2d:
        acc = (acc + row).astype(np.float32)
    return (acc.astype(np.float64) / x2d.shape[0]).astype(np.float32)


def double_seq(x2d):
    return np.array([sum(float(a) for a in x2d[:, c]) / x2d.shape[0]
                     for c in range(x2d.shape[1])]).astype(np.float32)


def report(name, t):
    x = t.contiguous().numpy()
    x2d = np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(-1, x.shape[1])
    sm = torch.native_batch_norm(t, None, None, None, None, True, 0.1, 1e-5)[1]
    am = torch.mean(t, [0] + list(range(2, t.dim())))
    print(f"{name:30s} float_seq={np.array_equal(sm.numpy(), float_seq(x2d))!s:5} "
          f"double_seq={np.array_equal(sm.numpy(), double_seq(x2d))!s:5} "
          f"at::mean={torch.equal(sm, am)!s:5}")


def data(*shape, offset=1e3):
    return torch.from_numpy((offset + rng.standard_normal(shape)).astype(np.float32))


report("NCHW 8x3x16x16", data(8, 3, 16, 16))
report("NHWC 8x3x16x16", data(8, 3, 16, 16).contiguous(memory_format=torch.channels_last))
report("NCDHW 8x3x4x8x8", data(8, 3, 4, 8, 8))
for _ in range(3):  # at::mean and the double sum often round alike; at::mean always matches
    report("NDHWC 32x3x8x16x16",
           data(32, 3, 8, 16, 16).contiguous(memory_format=torch.channels_last_3d))
report("NC 2048x3", data(2048, 3))
report("NCL 8x3x256", data(8, 3, 256))
report("NCL 2048x3x1", data(2048, 3, 1))
report("NCHW rows padded (view)", data(32, 3, 64, 80)[:, :, :, :64])
report("NHWC pixels padded (view)", data(8, 16, 16, 4).permute(0, 3, 1, 2)[:, :3])

# Channels-last: 200 random shapes; every mismatch has C = 1 (then the tensor is also
# NCHW-contiguous and takes the double path).
hits, total, misses = 0, 0, []
for _ in range(200):
    n, c, h, w = (int(v) for v in rng.integers(1, [6, 20, 12, 12]))
    if n * h * w < 2:
        continue
    x = data(n, c, h, w, offset=10.0 ** int(rng.integers(-2, 5)))
    t = x.contiguous(memory_format=torch.channels_last)
    sm = torch.native_batch_norm(t, None, None, None, None, True, 0.1, 1e-5)[1].numpy()
    x2d = np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)).reshape(-1, c)
    total += 1
    if np.array_equal(sm, float_seq(x2d)):
        hits += 1
    else:
        misses.append((n, c, h, w))
print(f"channels_last save_mean == float_seq in {hits}/{total}; misses {misses}")

# The constant channel of bnoracle's shrunk reference_agreement counterexample (NHWC 3x2x4x8,
# L = 96, every value -0x1.47ae1ap-7): PyTorch's save_mean is -0x1.47ae08p-7.
v = np.float32(float.fromhex("-0x1.47ae1ap-7"))
acc = np.float32(0)
for _ in range(96):
    acc = np.float32(acc + v)
print("L=96 constant -0x1.47ae1ap-7: float_seq mean", float(np.float32(float(acc) / 96)).hex())
t = torch.full((3, 2, 4, 8), float(v)).contiguous(memory_format=torch.channels_last)
print("  ATen save_mean", float(torch.native_batch_norm(t, None, None, None, None, True, 0.1,
                                                         1e-5)[1][0]).hex())

# eps = 0 and a constant channel: InvStd returns 0, so y = beta (the reference: 0/0).
t = torch.full((4, 1), 3.0)
y, m, r = torch.native_batch_norm(t, None, torch.tensor([0.5]), None, None, True, 0.1, 0.0)
print("eps=0, constant 3.0: invstd", float(r[0]), "y", y.flatten().tolist())

# A constant channel with eps > 0: y = x*alpha + (beta - mean*alpha) does not cancel exactly.
t = torch.full((2, 1, 2, 2), 7.0)
y, m, r = torch.native_batch_norm(t, torch.tensor([3.0]), torch.tensor([0.25]), None, None, True,
                                  0.1, 1e-5)
print("constant 7.0, gamma 3, beta 0.25: y", float(y.flatten()[0]).hex(), "(beta 0x1p-2)")

# L = 1: the ATen op accepts it (only F.batch_norm's _verify_batch_size refuses).
rm, rv = torch.zeros(3), torch.ones(3)
y, m, r = torch.native_batch_norm(torch.randn(1, 3, 1, 1), None, None, rm, rv, True, 0.1, 1e-5)
print("L=1 native_batch_norm: running_var", rv.tolist(), "save_invstd", r.tolist())

# Empty input through the user path: saved statistics are uninitialized double tensors.
out = torch._batch_norm_impl_index(torch.empty(0, 3, 2, 2), None, None, torch.zeros(3),
                                   torch.ones(3), True, 0.1, 1e-5, True)
print("N=0 _batch_norm_impl_index: save_mean dtype", out[1].dtype, "impl index", out[4])
# (torch.native_batch_norm on the same input dies with SIGFPE; not run here.)
