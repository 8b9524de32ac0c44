// The subprocess adapter (adapters/subprocess, docs/subprocess-protocol.md): the argv splitter,
// handshake failures, timeouts, malformed responses and restarts, with tiny fake kernels written
// in Python into the build tree. BNORACLE_TEST_PYTHON is a python3 (numpy is not needed).
#include "bnoracle/invoke.hpp"
#include "bnoracle/subprocess_kernel.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace bnoracle;
using namespace std::chrono_literals;

std::vector<std::string> split(const char* s) {
  return split_command(s);
}

TEST(SplitCommand, WordsQuotesAndEscapes) {
  EXPECT_EQ(split("python3 k.py"), (std::vector<std::string>{"python3", "k.py"}));
  EXPECT_EQ(split("  a\t b\n"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split("'a b' \"c d\""), (std::vector<std::string>{"a b", "c d"}));
  EXPECT_EQ(split("x'y z'\"w\""), (std::vector<std::string>{"xy zw"}));
  EXPECT_EQ(split(R"(a\ b c\\d)"), (std::vector<std::string>{"a b", R"(c\d)"}));
  EXPECT_EQ(split(R"("q\"uote" "back\\slash" "keep\n")"),
            (std::vector<std::string>{"q\"uote", R"(back\slash)", R"(keep\n)"}));
  EXPECT_EQ(split(R"('no \escape')"), (std::vector<std::string>{R"(no \escape)"}));
  EXPECT_EQ(split("'' \"\""), (std::vector<std::string>{"", ""}));
  // No shell: these are plain words.
  EXPECT_EQ(split("a|b $HOME *.py >x"), (std::vector<std::string>{"a|b", "$HOME", "*.py", ">x"}));
}

TEST(SplitCommand, Errors) {
  EXPECT_THROW(split(""), plugin_error);
  EXPECT_THROW(split("   "), plugin_error);
  EXPECT_THROW(split("'open"), plugin_error);
  EXPECT_THROW(split("\"open"), plugin_error);
  EXPECT_THROW(split("trailing\\"), plugin_error);
}

// A fake kernel: `body` runs after the standard handshake is printed (unless it replaces it).
class FakeKernel : public ::testing::Test {
 protected:
  static std::string dir() {
    const auto d = std::filesystem::path(BNORACLE_TEST_WORK) / "subprocess_fakes";
    std::filesystem::create_directories(d);
    return d.string();
  }
  static std::vector<std::string> script(const std::string& name, const std::string& code) {
    const std::string path = dir() + "/" + name + ".py";
    std::ofstream(path) << "import json, sys, time, os\n" << code;
    return {BNORACLE_TEST_PYTHON, path};
  }
  static std::string handshake() {
    return "HS = {'protocol': 'bnoracle-kernel', 'version': 1, 'name': 'fake',"
           " 'convention': 'pytorch', 'layouts': ['nchw', 'nhwc'],"
           " 'modes': ['forward_inference'], 'saves': 'none'}\n"
           "def send(o): print(json.dumps(o), flush=True)\n";
  }
  // A forward-inference problem on 1x2x1x2 NHWC data (strides n=4, c=1, h=2, w=2... see below).
  struct call {
    float src[4] = {1.0F, 2.0F, 3.0F, 4.0F};  // memory order NHWC: (c0,w0) (c1,w0) (c0,w1) (c1,w1)
    float rm[2] = {0.0F, 0.0F};
    float rv[2] = {1.0F, 1.0F};
    float dst[4] = {0, 0, 0, 0};
    bnk_problem p{};
    bnk_buffers b{};
    call() {
      p.struct_size = sizeof p;
      p.shape.rank = 4;
      p.shape.layout = BNK_LAYOUT_NHWC;
      const std::int64_t dims[5] = {1, 2, 1, 2, 1};
      const std::int64_t strides[5] = {4, 1, 4, 2, 0};
      for (int i = 0; i < 5; ++i) {
        p.shape.dims[i] = dims[i];
        p.shape.strides[i] = strides[i];
      }
      p.eps = 0.0;
      p.momentum = 0.1;
      b.src = src;
      b.running_mean = rm;
      b.running_var = rv;
      b.dst = dst;
    }
    bnk_status run(bn_kernel& k, std::string& msg) {
      return k.run(bn_mode::forward_inference, p, b, msg);
    }
  };
};

TEST_F(FakeKernel, EchoRoundTripGathersAndScattersThroughStrides) {
  // dst = src * 2 in logical order; also records the logical src it received.
  const auto argv = script("echo", handshake() + R"(
send(HS)
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    src = [float.fromhex(v) for v in r['inputs']['src']]
    assert r['layout'] == 'nhwc' and r['shape'] == [1, 2, 1, 2], r
    assert src == [1.0, 3.0, 2.0, 4.0], src   # logical order n, c, h, w
    send({'id': r['id'], 'status': 'ok', 'outputs': {'dst': [float.hex(2 * v) for v in src]}})
)");
  auto k = spawn_kernel(argv, 10s);
  EXPECT_EQ(k->info().name, "fake");
  EXPECT_TRUE(k->info().supports(bn_mode::forward_inference));
  EXPECT_FALSE(k->info().supports(bn_mode::forward_training));
  EXPECT_TRUE(k->info().supports(layout::nhwc));
  EXPECT_FALSE(k->info().supports(layout::strided));
  for (int i = 0; i < 2; ++i) {
    call c;
    std::string msg;
    ASSERT_EQ(c.run(*k, msg), BNK_OK) << msg;
    EXPECT_EQ(c.dst[0], 2.0F);
    EXPECT_EQ(c.dst[1], 4.0F);
    EXPECT_EQ(c.dst[2], 6.0F);
    EXPECT_EQ(c.dst[3], 8.0F);
  }
}

TEST_F(FakeKernel, StartFailures) {
  EXPECT_THROW((void)spawn_kernel({"/nonexistent/kernel"}, 5s), plugin_error);
  auto expect_error = [](const std::vector<std::string>& argv, const std::string& needle) {
    try {
      (void)spawn_kernel(argv, 2s);
      ADD_FAILURE() << "no error, expected: " << needle;
    } catch (const plugin_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(script("exits", "sys.exit(3)\n"), "exited with status 3");
  expect_error(script("garbage", "print('hello', flush=True)\ntime.sleep(5)\n"),
               "malformed handshake");
  expect_error(script("version3", handshake() + "HS['version'] = 3\nsend(HS)\ntime.sleep(5)\n"),
               "protocol version 3 is not supported (this bnoracle speaks versions 1 to 2)");
  expect_error(script("v1ops", handshake() + "HS['ops'] = ['batch_norm']\nsend(HS)\n"),
               "\"ops\" and \"types\" need protocol version 2");
  expect_error(script("badop", handshake() + "HS['version'] = 2\nHS['ops'] = ['cube_norm']\n"
                                             "send(HS)\n"),
               "unknown op \"cube_norm\"");
  expect_error(script("badtype", handshake() + "HS['version'] = 2\n"
                                               "HS['types'] = {'data': ['float8']}\nsend(HS)\n"),
               "unknown data type \"float8\"");
  expect_error(
      script("badrole", handshake() + "HS['version'] = 2\n"
                                      "HS['types'] = {'weights': ['float32']}\nsend(HS)\n"),
      "unknown role");
  expect_error(script("badconv", handshake() + "HS['convention'] = 'nope'\nsend(HS)\n"),
               "unknown convention");
  expect_error(script("badmode", handshake() + "HS['modes'] = ['sideways']\nsend(HS)\n"),
               "unknown mode");
  const auto start = std::chrono::steady_clock::now();
  expect_error(script("silent", "time.sleep(60)\n"), "no handshake within 2 s");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(FakeKernel, BadResponsesFailOneCallAndTheKernelRecovers) {
  // Each request gets a different misbehaviour, chosen by a counter in a file (the counter
  // survives restarts), then the fake behaves.
  const std::string counter = dir() + "/bad_counter";
  std::filesystem::remove(counter);
  const auto argv = script("bad", handshake() + "COUNTER = '" + counter + "'\n" + R"(
send(HS)
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    n = int(open(COUNTER).read()) if os.path.exists(COUNTER) else 0
    open(COUNTER, 'w').write(str(n + 1))
    ok = [float.hex(1.0)] * 4
    if n == 0: send({'id': r['id'] + 7, 'status': 'ok', 'outputs': {'dst': ok}})
    elif n == 1: send({'id': r['id'], 'status': 'ok', 'outputs': {'dst': ok[:3]}})
    elif n == 2: send({'id': r['id'], 'status': 'ok', 'outputs': {}})
    elif n == 3: send({'id': r['id'], 'status': 'ok', 'outputs': {'dst': ['0x1.0000001p+0'] * 4}})
    elif n == 4: print('not json', flush=True)
    elif n == 5: os._exit(9)
    elif n == 6: time.sleep(60)
    elif n == 7: send({'id': r['id'], 'status': 'refused', 'message': 'no thanks'})
    else: send({'id': r['id'], 'status': 'ok', 'outputs': {'dst': ok}})
)");
  auto k = spawn_kernel(argv, 2s);
  const std::vector<std::pair<bnk_status, std::string>> expected{
      {BNK_FAILED, "expected 1"},  // wrong id
      {BNK_FAILED, "has 3 values, expected 4"},
      {BNK_FAILED, "\"dst\" is missing"},
      {BNK_FAILED, "is not a float32"},  // needs more than 24 bits
      {BNK_FAILED, "not a JSON object"},
      {BNK_FAILED, "exited with status 9"},
      {BNK_FAILED, "within 2 s (timeout)"},
      {BNK_REFUSED, "no thanks"},
      {BNK_OK, ""},
  };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    call c;
    std::string msg;
    const bnk_status s = c.run(*k, msg);
    EXPECT_EQ(s, expected[i].first) << "call " << i << ": " << msg;
    EXPECT_NE(msg.find(expected[i].second), std::string::npos) << "call " << i << ": " << msg;
  }
}

TEST_F(FakeKernel, OperationsTravelAsRequestsWithOp) {
  // A fake that provides the fold and the merge: it checks the requests and answers with values
  // made from them, so that the test sees what crossed the pipe both ways.
  const auto argv = script("ops", handshake() + R"(
HS['operations'] = ['fold', 'syncbn_merge']
send(HS)
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    i = r['inputs']
    if r['op'] == 'fold':
        assert r['out_channels'] == 2 and r['fan_in'] == 3 and 'bias' not in i, r
        w = [float.fromhex(v) for v in i['weight']]
        out = {'weight': [float.hex(-v) for v in w], 'bias': i['beta']}
    else:
        assert r['op'] == 'syncbn_merge' and r['counts'] == [3, 0] and r['channels'] == 1, r
        assert r['momentum'] is None and r['inputs']['num_batches_tracked'] == 4, r
        assert i['shard_mean'] == ['0x1p+0', '0x1p+1'] and len(i['shard_var']) == 2, r
        out = {'mean': ['0x1p+0'], 'var': ['0x1p-1'], 'invstd': ['0x1p+2'],
               'running_mean': ['0x1p-2'], 'running_var': ['0x1p-3'], 'num_batches_tracked': 5}
    send({'id': r['id'], 'status': 'ok', 'outputs': out})
)");
  auto k = spawn_kernel(argv, 10s);
  EXPECT_TRUE(k->info().fold);
  EXPECT_TRUE(k->info().syncbn_merge);
  const float weight[6] = {1, 2, 3, 4, 5, 6};
  const float gamma[2] = {1, 1}, beta[2] = {0.5F, -0.5F}, rm[2] = {0, 0}, rv[2] = {1, 1};
  float weight_out[6] = {}, bias_out[2] = {};
  bnk_fold_problem fp{sizeof(bnk_fold_problem), 2, 3, 1e-5, 0};
  bnk_fold_buffers fb{weight, nullptr, gamma, beta, rm, rv, weight_out, bias_out};
  std::string msg;
  ASSERT_EQ(k->run_fold(fp, fb, msg), BNK_OK) << msg;
  EXPECT_EQ(weight_out[5], -6.0F);
  EXPECT_EQ(bias_out[1], -0.5F);

  const std::int64_t count[2] = {3, 0};
  const float shard_mean[2] = {1, 2}, shard_var[2] = {0.25F, 0};
  float run_mean[1] = {0}, run_var[1] = {1}, mean[1] = {}, var[1] = {}, invstd[1] = {};
  std::int64_t nbt = 4;
  bnk_syncbn_problem sp{sizeof(bnk_syncbn_problem), 2, 1, 1e-5, 0.1, 1, 1};
  bnk_syncbn_buffers sb{count, shard_mean, shard_var, run_mean, run_var, &nbt, mean, var, invstd};
  ASSERT_EQ(k->run_syncbn_merge(sp, sb, msg), BNK_OK) << msg;
  EXPECT_EQ(mean[0], 1.0F);
  EXPECT_EQ(var[0], 0.5F);
  EXPECT_EQ(invstd[0], 4.0F);
  EXPECT_EQ(run_mean[0], 0.25F);
  EXPECT_EQ(run_var[0], 0.125F);
  EXPECT_EQ(nbt, 5);
}

TEST_F(FakeKernel, OperationsNotDeclaredAreUnsupportedAndUnknownOnesAreRefused) {
  // Without "operations" the adapter never sends them: the call is unsupported, and the process
  // (which would fail any request) is not asked.
  auto k = spawn_kernel(script("no_ops", handshake() + "send(HS)\nsys.stdin.readline()\n"), 5s);
  EXPECT_FALSE(k->info().fold);
  const float w[1] = {1}, g[1] = {1}, b[1] = {0}, m[1] = {0}, v[1] = {1};
  float wo[1] = {}, bo[1] = {};
  bnk_fold_problem fp{sizeof(bnk_fold_problem), 1, 1, 1e-5, 0};
  bnk_fold_buffers fb{w, nullptr, g, b, m, v, wo, bo};
  std::string msg;
  EXPECT_EQ(k->run_fold(fp, fb, msg), BNK_UNSUPPORTED);
  try {
    (void)spawn_kernel(
        script("bad_ops", handshake() + "HS['operations'] = ['transpose']\nsend(HS)\n"), 2s);
    ADD_FAILURE() << "an unknown operation was accepted";
  } catch (const plugin_error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown operation"), std::string::npos) << e.what();
  }
}

TEST_F(FakeKernel, VersionTwoRequestsCarryTheOpAndTheDataTypes) {
  // A version-2 fake: it checks every request's op and types and echoes src; the fold is named in
  // "mode", with the batch-norm op.
  const auto argv = script("v2", handshake() + R"(
HS['version'] = 2
HS['ops'] = ['batch_norm', 'layer_norm']
HS['types'] = {'data': ['float32', 'bfloat16']}
HS['operations'] = ['fold']
send(HS)
BN = {'kind': 'batch_norm', 'normalized_axes': 0, 'groups': 0, 'centred': True,
      'params': 'none', 'weight_offset': False, 'running_stats': True}
F32 = {'data': 'float32', 'parameters': 'float32', 'statistics': 'float32'}
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    if r['mode'] == 'fold':
        assert 'out_channels' in r and r['op'] == dict(BN, params='per_channel'), r
        out = {'weight': r['inputs']['weight'], 'bias': r['inputs']['beta']}
    else:
        assert r['mode'] == 'forward_inference' and r['op'] == BN and r['types'] == F32, r
        assert r['affine'] is False, r
        out = {'dst': r['inputs']['src']}
    send({'id': r['id'], 'status': 'ok', 'outputs': out})
)");
  auto k = spawn_kernel(argv, 10s);
  const kernel_info& info = k->info();
  EXPECT_EQ(info.abi_version, 2);
  EXPECT_TRUE(info.supports(op_kind::layer_norm));
  EXPECT_FALSE(info.supports(op_kind::group_norm));
  EXPECT_TRUE(
      info.supports(data_types{format_id::bfloat16, format_id::float32, format_id::float32}));
  EXPECT_FALSE(
      info.supports(data_types{format_id::float16, format_id::float32, format_id::float32}));
  call c;
  std::string msg;
  ASSERT_EQ(c.run(*k, msg), BNK_OK) << msg;
  EXPECT_EQ(c.dst[3], 4.0F);
  const float w[2] = {1, 2}, g[1] = {1}, b[1] = {0.5F}, m[1] = {0}, v[1] = {1};
  float wo[2] = {}, bo[1] = {};
  bnk_fold_problem fp{sizeof(bnk_fold_problem), 1, 2, 1e-5, 0};
  bnk_fold_buffers fb{w, nullptr, g, b, m, v, wo, bo};
  ASSERT_EQ(k->run_fold(fp, fb, msg), BNK_OK) << msg;
  EXPECT_EQ(wo[1], 2.0F);
  EXPECT_EQ(bo[0], 0.5F);
}

TEST_F(FakeKernel, HalfPrecisionValuesTravelAsTheirValuesAndMustBeValuesOfTheirFormat) {
  // A bfloat16 kernel through the whole path (invoke lays the tensors out as bfloat16 bits):
  // it receives src as hex floats of bfloat16 values and answers dst = src + 1 in bfloat16, or,
  // with 'bad' in the problem's eps, one value bfloat16 does not hold.
  const auto argv = script("bf16", handshake() + R"(
HS['version'] = 2
HS['types'] = {'data': ['bfloat16'], 'parameters': ['float32'], 'statistics': ['float32']}
send(HS)
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    assert r['types'] == {'data': 'bfloat16', 'parameters': 'float32', 'statistics': 'float32'}, r
    src = [float.fromhex(v) for v in r['inputs']['src']]
    dst = [v + 1.0 for v in src]
    if float.fromhex(r['eps']) == 0.5:
        dst[0] = 1.0 + 2.0 ** -12  # 13 significant bits: not a bfloat16 value
    send({'id': r['id'], 'status': 'ok', 'outputs': {'dst': [v.hex() for v in dst]}})
)");
  auto k = spawn_kernel(argv, 10s);
  call_request q;
  q.mode = bn_mode::forward_inference;
  q.problem.n = 1;
  q.problem.c = 2;
  q.problem.spatial = {1, 2};
  q.problem.mem_layout = layout::nhwc;
  q.problem.types = {format_id::bfloat16, format_id::float32, format_id::float32};
  q.affine = false;
  q.src = {1.0F, 2.0F + 0x1p-6F, 3.0F, 0x1.fep+127F};  // bfloat16 values, the last its largest
  q.running_mean = {0.0F, 0.0F};
  q.running_var = {1.0F, 1.0F};
  call_options o;
  o.isolate = false;
  const call_result good = invoke(*k, q, o);
  ASSERT_TRUE(good.ok()) << good.describe();
  EXPECT_EQ(good.dst, (std::vector<float>{2.0F, 3.0F + 0x1p-6F, 4.0F, 0x1.fep+127F}));
  q.problem.eps = 0.5;
  const call_result bad = invoke(*k, q, o);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.describe().find("not a bfloat16 value"), std::string::npos) << bad.describe();
}

TEST_F(FakeKernel, VersionOneKernelsGetVersionOneRequestsAndOnlyFloat32BatchNorm) {
  // A version-1 fake that fails any request with a version-2 field.
  const auto argv = script("v1", handshake() + R"(
send(HS)
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    assert 'op' not in r and 'types' not in r, r
    send({'id': r['id'], 'status': 'ok', 'outputs': {'dst': r['inputs']['src']}})
)");
  auto k = spawn_kernel(argv, 10s);
  EXPECT_EQ(k->info().abi_version, 1);
  EXPECT_TRUE(k->info().supports(op_kind::batch_norm));
  EXPECT_FALSE(k->info().supports(op_kind::layer_norm));
  call c;
  std::string msg;
  ASSERT_EQ(c.run(*k, msg), BNK_OK) << msg;
  // A layer-norm problem never reaches it.
  bnk_problem_v2 ln = to_v2(c.p);
  ln.op.kind = BNK_OP_LAYER_NORM;
  ln.op.normalized_axes = 1;
  ln.op.running_stats = 0;
  EXPECT_EQ(k->run_v2(bn_mode::forward_inference, ln, to_v2(c.b), msg), BNK_UNSUPPORTED);
  EXPECT_NE(msg.find("protocol version 1"), std::string::npos) << msg;
  ASSERT_EQ(c.run(*k, msg), BNK_OK) << msg;  // and the process is still in step
}

// ---- Hostile kernel processes: nothing they send crashes, hangs or floods bnoracle -------------

// Whether process `pid` is gone (or a zombie nobody reaped yet), waiting up to two seconds.
bool gone(int pid) {
  for (int i = 0; i < 200; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(stat, text);
    const auto close = text.rfind(')');
    if (!stat || close == std::string::npos || text.substr(close + 2, 1) == "Z") return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST_F(FakeKernel, DeeplyNestedLinesAreRefusedWithoutRecursion) {
  // 30,000 levels (60 kB, within the line limits) inside the id, inside an output value and in
  // the handshake's layouts: parsing stops at the depth limit, no message prints the nested
  // value, and the process is restarted. (100,000 levels make a line longer than the limits,
  // refused before parsing.)
  const std::string deep = "deep = '[' * 30000 + ']' * 30000\n";
  const std::string deep_id = handshake() + deep + R"(
send(HS)
for line in iter(sys.stdin.readline, ''):
    print('{"id": ' + deep + ', "status": "ok"}', flush=True)
)";
  const std::string deep_output = handshake() + deep + R"(
send(HS)
for line in iter(sys.stdin.readline, ''):
    r = json.loads(line)
    print('{"id": %d, "status": "ok", "outputs": {"dst": [%s, "0x1p+0"]}}' % (r['id'], deep),
          flush=True)
)";
  for (const auto& [name, code] : {std::pair{"deep_id", deep_id}, {"deep_output", deep_output}}) {
    SCOPED_TRACE(name);
    auto k = spawn_kernel(script(name, code), 5s);
    call c;
    std::string msg;
    EXPECT_EQ(c.run(*k, msg), BNK_FAILED) << msg;
    EXPECT_NE(msg.find("nests deeper than 16 levels"), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 1000U) << msg;
  }
  try {
    (void)spawn_kernel(script("deep_handshake", handshake() + R"(
HS['layouts'] = ['nchw']
print(json.dumps(HS).replace('["nchw"]', '[' * 30000 + ']' * 30000), flush=True)
time.sleep(5)
)"),
                       5s);
    ADD_FAILURE() << "a handshake nested 30,000 levels deep was accepted";
  } catch (const plugin_error& e) {
    EXPECT_NE(std::string(e.what()).find("malformed handshake"), std::string::npos) << e.what();
  }
}

TEST_F(FakeKernel, ATrickleOfBytesEndsAtTheDeadline) {
  // One byte every 10 ms and never a newline: the deadline holds while data keeps arriving.
  auto k = spawn_kernel(script("trickle", handshake() + R"(
send(HS)
sys.stdin.readline()
while True:
    sys.stdout.write('x'); sys.stdout.flush(); time.sleep(0.01)
)"),
                        1s);
  call c;
  std::string msg;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.run(*k, msg), BNK_FAILED) << msg;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_NE(msg.find("no response within 1 s (timeout"), std::string::npos) << msg;
}

TEST_F(FakeKernel, AnEndlessLineIsCutAtTheLimitTheRequestAllows) {
  // A 500 MB line: refused once it passes the limit derived from the request, long before the
  // timeout; memory stays bounded by that limit. The request asks for at most 16 values (4
  // elements and 6 vectors of 2 channels): 65,536 + 32 x 16 = 66,048 bytes.
  auto k = spawn_kernel(script("endless", handshake() + R"(
send(HS)
sys.stdin.readline()
block = 'y' * (1 << 20)
for _ in range(500):
    sys.stdout.write(block)
sys.stdout.flush()
time.sleep(60)
)"),
                        20s);
  call c;
  std::string msg;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.run(*k, msg), BNK_FAILED) << msg;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(msg.find("line is longer than 66048 bytes"), std::string::npos) << msg;
}

TEST_F(FakeKernel, AGrandchildHoldingStdoutIsReportedAndKilled) {
  // The kernel process starts a child that keeps its stdout, then dies without answering: the
  // call fails at once (not at the timeout), saying why, and the child is killed.
  const std::string pid_file = dir() + "/grandchild.pid";
  std::filesystem::remove(pid_file);
  auto k = spawn_kernel(script("grandchild", handshake() + "PID_FILE = '" + pid_file + "'\n" + R"(
send(HS)
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
open(PID_FILE, 'w').write(str(pid))
os._exit(0)
)"),
                        20s);
  call c;
  std::string msg;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.run(*k, msg), BNK_FAILED) << msg;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(msg.find("a process it started kept its stdout open; that process was killed"),
            std::string::npos)
      << msg;
  int pid = 0;
  std::ifstream(pid_file) >> pid;
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(gone(pid)) << "the grandchild " << pid << " still runs";
}

}  // namespace
