// Hostile and malformed fixture and results files: every one gets a fixture_error that names the
// file and the field, never a crash, an allocation of a claimed size, or another exception type.
// The fixtures are generated here (first case of the corpus catalog), so no file is read.
#include "bnoracle/catalog.hpp"
#include "bnoracle/fixture.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using bnoracle::fixture_error;
using bnoracle::parse_fixture;
using bnoracle::parse_results;
using json = nlohmann::json;

constexpr const char* k_file = "dir/case.json";

const std::vector<bnoracle::fixture_file>& first_case_files() {
  static const auto files = bnoracle::make_fixtures(bnoracle::corpus_catalog(1)[0]);
  return files;
}

// The first fixture of the first corpus case whose file name starts with `op` and that has
// expected outputs (no refusal).
const std::string& fixture_text(const std::string& op) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(op);
  if (it != cache.end()) return it->second;
  for (const auto& f : first_case_files()) {
    const std::string base = std::filesystem::path(f.relative_path).filename().string();
    if (base.rfind(op, 0) != 0) continue;
    const json j = json::parse(f.text);
    if (!j.at("refusal").is_null() || j.at("expected").empty()) continue;
    return cache[op] = f.text;
  }
  throw std::logic_error("no fixture for " + op + " in the first corpus case");
}

const std::string& backward() {
  return fixture_text("backward_training");
}
const std::string& training() {
  return fixture_text("forward_training");
}
const std::string& inference() {
  return fixture_text("forward_inference");
}

// Runs `parse` and checks that it throws fixture_error naming `file` and exactly `field`.
void expect_error(const std::function<void()>& parse, const std::string& field,
                  const std::string& file = k_file) {
  try {
    parse();
    ADD_FAILURE() << "accepted; expected a fixture_error for field '" << field << "'";
  } catch (const fixture_error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.file(), file) << what;
    EXPECT_EQ(e.field(), field) << what;
    EXPECT_EQ(what.rfind(file + ": ", 0), 0U) << what;
    if (!field.empty()) {
      EXPECT_NE(what.find(field + ": "), std::string::npos) << what;
    }
  }
}

#define EXPECT_FIXTURE_ERROR(text, field)                            \
  do {                                                               \
    SCOPED_TRACE(field);                                             \
    const std::string t_ = (text);                                   \
    expect_error([&] { (void)parse_fixture(t_, k_file); }, (field)); \
  } while (0)

#define EXPECT_RESULTS_ERROR(text, field)                            \
  do {                                                               \
    SCOPED_TRACE(field);                                             \
    const std::string t_ = (text);                                   \
    expect_error([&] { (void)parse_results(t_, k_file); }, (field)); \
  } while (0)

// Applies `edit` to the parsed fixture and serializes it again.
std::string mutate(const std::string& text, const std::function<void(json&)>& edit) {
  json j = json::parse(text);
  edit(j);
  return j.dump(1);
}

// Inserts `member` (e.g. "\"op\": 1,") right after the first occurrence of `after`.
std::string insert_after(const std::string& text, const std::string& after,
                         const std::string& member) {
  const auto at = text.find(after);
  if (at == std::string::npos) throw std::logic_error("no '" + after + "' in the fixture");
  std::string out = text;
  out.insert(at + after.size(), member);
  return out;
}

// Index of the first element of class 'f' in expected.<name>.
std::size_t first_finite(const std::string& text, const std::string& name) {
  const std::string classes = json::parse(text)["expected"][name]["classes"];
  const auto i = classes.find('f');
  if (i == std::string::npos) throw std::logic_error("no finite golden in " + name);
  return i;
}

std::string valid_results() {
  bnoracle::results r;
  r.id = "some/case/forward_training";
  r.status = "ok";
  r.message = "hello";
  r.num_batches_tracked = 3;
  r.outputs["dst"] = {1.5F, -0.0F, std::numeric_limits<float>::infinity(), 0x1p-149F};
  r.outputs["mean"] = {2.0F};
  return bnoracle::dump_results(r);
}

// ---- Valid input -------------------------------------------------------------------------------

// "expected" holds exactly the outputs of the fixture's operation: no stranger, none missing.
TEST(FixtureLoader, ExpectedOutputsAreThoseOfTheOperation) {
  EXPECT_FIXTURE_ERROR(
      mutate(backward(), [](json& j) { j["expected"]["dst"] = j["expected"]["diff_src"]; }),
      "expected.dst");
  EXPECT_FIXTURE_ERROR(mutate(backward(), [](json& j) { j["expected"].erase("diff_gamma"); }),
                       "expected.diff_gamma");
  EXPECT_FIXTURE_ERROR(mutate(inference(), [](json& j) { j["expected"] = json::object(); }),
                       "expected.dst");
  // A fixture that expects a refusal needs no output.
  const std::string refused = mutate(inference(), [](json& j) {
    j["expected"] = json::object();
    j["refusal"] = "refused on purpose";
  });
  EXPECT_NO_THROW((void)parse_fixture(refused, k_file));
}

TEST(FixtureLoader, EveryCorpusFixtureParses) {
  for (const auto& spec : bnoracle::corpus_catalog(1)) {
    for (const auto& f : bnoracle::make_fixtures(spec)) {
      SCOPED_TRACE(f.relative_path);
      const bnoracle::fixture fx = parse_fixture(f.text, f.relative_path);
      EXPECT_EQ(fx.catalog_case, spec.name);
      EXPECT_EQ(fx.file, f.relative_path);
      EXPECT_EQ(fx.inputs.at("src").size(),
                static_cast<std::size_t>(fx.problem.n * fx.problem.c * [&] {
                  std::int64_t s = 1;
                  for (auto d : fx.problem.spatial) s *= d;
                  return s;
                }()));
      for (const auto& out : fx.expected) {
        EXPECT_EQ(out.classes.size(), out.values.size());
        EXPECT_EQ(out.exact.size(), out.values.size());
        EXPECT_EQ(out.ulp_exp.size(), out.values.size());
        for (const auto& b : out.bound) EXPECT_EQ(b.size(), out.values.size());
      }
    }
  }
}

TEST(FixtureLoader, FoldAndSyncbnFixturesParse) {
  for (const auto& f : bnoracle::make_fold_and_syncbn_fixtures(1)) {
    SCOPED_TRACE(f.relative_path);
    const bnoracle::fixture fx = parse_fixture(f.text, f.relative_path);
    EXPECT_NE(fx.kind, "batch_norm");
    EXPECT_FALSE(fx.expected.empty());
  }
}

std::string fold_or_syncbn(const std::string& op) {
  for (const auto& f : bnoracle::make_fold_and_syncbn_fixtures(1)) {
    if (json::parse(f.text)["case"]["mode"] == op) return f.text;
  }
  throw std::logic_error("no " + op + " fixture");
}

TEST(FixtureLoader, HostileFoldAndSyncbnFixtures) {
  const std::string sync = fold_or_syncbn("syncbn_merge");
  for (const json& v :
       {json(-1), json(std::numeric_limits<std::uint64_t>::max()), json(std::uint64_t{1} << 63),
        json((std::int64_t{1} << 26) + 1), json("3"), json(1.5), json(nullptr)}) {
    SCOPED_TRACE(v.dump());
    EXPECT_FIXTURE_ERROR(mutate(sync, [&](json& j) { j["inputs"]["count"][0] = v; }),
                         "inputs.count[0]");
  }
  EXPECT_FIXTURE_ERROR(mutate(sync, [](json& j) { j["inputs"]["count"].push_back(1); }),
                       "inputs.count");
  EXPECT_FIXTURE_ERROR(mutate(sync, [](json& j) { j["inputs"].erase("shard_var"); }),
                       "inputs.shard_var");
  EXPECT_FIXTURE_ERROR(mutate(sync,
                              [](json& j) {
                                j["case"]["shape"] = json::array({std::int64_t{1} << 62, 3});
                              }),
                       "case.shape");
  const std::string fold = fold_or_syncbn("fold");
  EXPECT_FIXTURE_ERROR(mutate(fold, [](json& j) { j["inputs"]["weight"].erase(0); }),
                       "inputs.weight");
  EXPECT_FIXTURE_ERROR(mutate(fold,
                              [](json& j) {
                                j["case"]["layout"] = "nchw";
                                j["case"]["shape"] = json::array({2, 5, 1, 1});
                              }),
                       "case.shape");
  EXPECT_FIXTURE_ERROR(mutate(fold, [](json& j) { j["expected"]["weight"]["ulp_exp"][0] = 999; }),
                       "expected.weight.ulp_exp[0]");
}

TEST(FixtureLoader, ResultsRoundTrip) {
  const bnoracle::results r = parse_results(valid_results(), k_file);
  EXPECT_EQ(r.file, k_file);
  EXPECT_EQ(r.id, "some/case/forward_training");
  EXPECT_EQ(r.status, "ok");
  EXPECT_EQ(r.message, "hello");
  ASSERT_TRUE(r.num_batches_tracked.has_value());
  EXPECT_EQ(*r.num_batches_tracked, 3);
  ASSERT_EQ(r.outputs.at("dst").size(), 4U);
  EXPECT_EQ(r.outputs.at("dst")[0], 1.5F);
  EXPECT_TRUE(std::signbit(r.outputs.at("dst")[1]));
  EXPECT_TRUE(std::isinf(r.outputs.at("dst")[2]));
  EXPECT_EQ(r.outputs.at("dst")[3], 0x1p-149F);
  EXPECT_EQ(r.outputs.at("mean"), std::vector<float>{2.0F});
}

TEST(FixtureLoader, ParseFloatAcceptsWhatTheWriterWrites) {
  EXPECT_EQ(bnoracle::parse_float("0x1.8p+1"), 3.0F);
  EXPECT_EQ(bnoracle::parse_float("1.5"), 1.5F);
  EXPECT_EQ(bnoracle::parse_float("0x1p-149"), 0x1p-149F);
  EXPECT_EQ(bnoracle::parse_float("0x1.fffffep+127"), std::numeric_limits<float>::max());
  const auto negzero = bnoracle::parse_float("-0x0p+0");
  ASSERT_TRUE(negzero.has_value());
  EXPECT_TRUE(std::signbit(*negzero));
  EXPECT_TRUE(std::isnan(bnoracle::parse_float("nan").value()));
  EXPECT_EQ(bnoracle::parse_float("inf"), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bnoracle::parse_float("-inf"), -std::numeric_limits<float>::infinity());
}

TEST(FixtureLoader, ParseFloatRefusesEverythingElse) {
  for (const char* bad :
       {"0x1.8p+1x", "1e999999", "-1e999999", "", "infinity", "0x", "INF", "NaN", "nan(1)", " 1",
        "1 ", "--1", "1e", "0x1p+128", "+", ".", "e5", "1,5", "0x1.8p+1\n"}) {
    EXPECT_FALSE(bnoracle::parse_float(bad).has_value()) << "'" << bad << "'";
  }
  EXPECT_FALSE(bnoracle::parse_float(std::string(65, '1')).has_value());
  EXPECT_FALSE(bnoracle::parse_float(std::string("1\0", 2)).has_value());
}

// ---- Malformed and truncated JSON ------------------------------------------------------------

TEST(FixtureLoader, MalformedJson) {
  for (const std::string& bad : std::vector<std::string>{
           "", " ", "{", "}", "{\"schema\": }", "{\"schema\": \"bnoracle.fixture\",}", "nul",
           "{\"a\": NaN}", "{\"a\": 01}", "// comment\n{}", "{'a': 1}", "\xff\xfe{}",
           "{\"a\": \"\x01\"}", "{\"a\": \"\\ud800\"}", "{} {}", std::string("{\0}", 3),
           "{\"a\": 1e999999}"}) {
    SCOPED_TRACE(bad);
    EXPECT_FIXTURE_ERROR(bad, "");
    EXPECT_RESULTS_ERROR(bad, "");
  }
  // Valid JSON that is not an object.
  for (const std::string bad : {"[]", "1", "\"bnoracle.fixture\"", "null", "true", "[{}]"}) {
    EXPECT_FIXTURE_ERROR(bad, "");
    EXPECT_RESULTS_ERROR(bad, "");
  }
}

TEST(FixtureLoader, TruncatedAtManyPoints) {
  for (const std::string* text : {&backward(), &training(), &inference()}) {
    for (std::size_t k = 0; k + 2 < text->size(); k += 97) {
      SCOPED_TRACE("truncated to " + std::to_string(k) + " bytes");
      EXPECT_FIXTURE_ERROR(text->substr(0, k), "");
    }
  }
  const std::string r = valid_results();
  for (std::size_t k = 0; k + 2 < r.size(); k += 7) {
    SCOPED_TRACE("truncated to " + std::to_string(k) + " bytes");
    EXPECT_RESULTS_ERROR(r.substr(0, k), "");
  }
}

TEST(FixtureLoader, DeepNestingDoesNotOverflowTheStack) {
  constexpr std::size_t depth = 200000;
  EXPECT_FIXTURE_ERROR(std::string(depth, '['), "");
  EXPECT_FIXTURE_ERROR(std::string(depth, '[') + std::string(depth, ']'), "");
  std::string objects;
  for (std::size_t i = 0; i < depth / 4; ++i) objects += "{\"a\":";
  EXPECT_RESULTS_ERROR(objects, "");
  EXPECT_RESULTS_ERROR(objects + "1" + std::string(depth / 4, '}'), "schema");
}

// ---- Schema and version ----------------------------------------------------------------------

TEST(FixtureLoader, SchemaAndVersion) {
  const std::string& t = backward();
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["schema"] = "bnoracle.results"; }), "schema");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["schema"] = "Bnoracle.Fixture"; }), "schema");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["schema"] = 1; }), "schema");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j.erase("schema"); }), "schema");
  for (const json& v : {json(3), json(0), json(-1), json("2"), json(2.0), json(true), json(nullptr),
                        json(std::numeric_limits<std::uint64_t>::max()),
                        json(std::numeric_limits<std::int64_t>::min()), json::array({1})}) {
    SCOPED_TRACE(v.dump());
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["schema_version"] = v; }), "schema_version");
  }
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j.erase("schema_version"); }), "schema_version");
  // A results file is not a fixture, and the other way round.
  EXPECT_FIXTURE_ERROR(valid_results(), "schema");
  EXPECT_RESULTS_ERROR(t, "schema");
}

// ---- Schema version 2's op and data types, and version 1 ---------------------------------------

// A version-2 fixture as version 1 wrote it: the mode in "op", no "mode" or "types".
std::string as_version_1(const std::string& text) {
  return mutate(text, [](json& j) {
    j["schema_version"] = 1;
    j["case"]["op"] = j["case"]["mode"];
    j["case"].erase("mode");
    j["case"].erase("types");
  });
}

TEST(FixtureLoader, VersionTwoReadsTheOpAndTheDataTypes) {
  const bnoracle::fixture f = parse_fixture(backward(), k_file);
  EXPECT_EQ(f.schema_version, 2);
  EXPECT_EQ(f.problem.op, bnoracle::batch_norm_op());
  EXPECT_EQ(f.problem.types, bnoracle::data_types{});
  EXPECT_EQ(f.op, bnoracle::bn_mode::backward_training);
  const std::string& t = backward();
  const std::vector<std::pair<std::string, std::function<void(json&)>>> edits = {
      {"case.op.kind", [](json& j) { j["case"]["op"]["kind"] = "cube_norm"; }},
      {"case.op.params", [](json& j) { j["case"]["op"]["params"] = "per_row"; }},
      {"case.op.groups", [](json& j) { j["case"]["op"]["groups"] = -1; }},
      {"case.op.centred", [](json& j) { j["case"]["op"]["centred"] = 1; }},
      {"case.op.running_stats", [](json& j) { j["case"]["op"].erase("running_stats"); }},
      // Consistent fields, or the descriptor is refused as a whole.
      {"case.op", [](json& j) { j["case"]["op"]["centred"] = false; }},
      {"case.op", [](json& j) { j["case"]["op"]["groups"] = 2; }},
      {"case.types.data", [](json& j) { j["case"]["types"]["data"] = "float8"; }},
      {"case.types.statistics", [](json& j) { j["case"]["types"].erase("statistics"); }},
      {"case.types", [](json& j) { j["case"]["types"] = "float32"; }},
      // An op that does not fit the shape: 2 groups of the 3 channels.
      {"case.op",
       [](json& j) {
         j["case"]["op"]["kind"] = "group_norm";
         j["case"]["op"]["groups"] = 2;
         j["case"]["op"]["running_stats"] = false;
       }},
      // A bfloat16 case whose input bfloat16 does not hold (12 significant bits): refused with
      // the value named, never rounded by the loader.
      {"inputs.src[0]",
       [](json& j) {
         j["case"]["types"]["data"] = "bfloat16";
         j["inputs"]["src"][0] = "0x1.001p+0";
       }},
      // The fixture gives γ/β, but the op has none.
      {"case.affine", [](json& j) { j["case"]["op"]["params"] = "none"; }},
  };
  for (const auto& [field, edit] : edits) {
    SCOPED_TRACE(field);
    EXPECT_FIXTURE_ERROR(mutate(t, edit), field);
  }
  // An inference mode of an op that keeps no running statistics does not exist.
  EXPECT_FIXTURE_ERROR(mutate(inference(),
                              [](json& j) {
                                j["case"]["op"]["kind"] = "group_norm";
                                j["case"]["op"]["groups"] = 3;
                                j["case"]["op"]["running_stats"] = false;
                              }),
                       "case.mode");
}

TEST(FixtureLoader, VersionOneIsReadAsFloat32BatchNorm) {
  const bnoracle::fixture v2 = parse_fixture(backward(), k_file);
  const bnoracle::fixture v1 = parse_fixture(as_version_1(backward()), k_file);
  EXPECT_EQ(v1.schema_version, 1);
  EXPECT_EQ(v1.problem.op, bnoracle::batch_norm_op());
  EXPECT_EQ(v1.problem.types, bnoracle::data_types{});
  EXPECT_EQ(v1.op, v2.op);
  EXPECT_EQ(v1.inputs, v2.inputs);
  ASSERT_EQ(v1.expected.size(), v2.expected.size());
  for (std::size_t i = 0; i < v1.expected.size(); ++i) {
    EXPECT_EQ(v1.expected[i].name, v2.expected[i].name);
    EXPECT_EQ(v1.expected[i].exact, v2.expected[i].exact);
    EXPECT_EQ(v1.expected[i].bound, v2.expected[i].bound);
  }
  // Version 1 has no field for strides, mode or types.
  EXPECT_FIXTURE_ERROR(
      mutate(as_version_1(backward()), [](json& j) { j["case"]["layout"] = "strided"; }),
      "case.layout");
  EXPECT_FIXTURE_ERROR(
      mutate(as_version_1(backward()), [](json& j) { j["case"]["op"] = "sideways"; }), "case.op");
}

TEST(FixtureLoader, AStridedViewCarriesItsStrides) {
  // The default catalog's strided cases export and load (version 1 could not hold them).
  for (const auto& spec : bnoracle::default_catalog(1)) {
    if (spec.problem.mem_layout != bnoracle::layout::strided) continue;
    SCOPED_TRACE(spec.name);
    const auto files = bnoracle::make_fixtures(spec);
    ASSERT_FALSE(files.empty());
    const bnoracle::fixture f = parse_fixture(files.front().text, k_file);
    EXPECT_EQ(f.problem.mem_layout, bnoracle::layout::strided);
    EXPECT_EQ(f.problem.strides, bnoracle::geometry(spec.problem).strides());
    return;
  }
  FAIL() << "the default catalog has no strided case";
}

// ---- Duplicate keys --------------------------------------------------------------------------

TEST(FixtureLoader, DuplicateKeys) {
  const std::string& t = backward();
  EXPECT_FIXTURE_ERROR(insert_after(t, "{", "\"schema\": \"bnoracle.fixture\","), "schema");
  EXPECT_FIXTURE_ERROR(insert_after(t, "{", "\"refusal\": null,"), "refusal");
  EXPECT_FIXTURE_ERROR(insert_after(t, "{", "\"case\": {},"), "case");
  EXPECT_FIXTURE_ERROR(insert_after(t, "{", "\"\": 1, \"\": 2,"), "");
  EXPECT_FIXTURE_ERROR(insert_after(t, "\"case\": {", "\"op\": \"forward_inference\","), "case.op");
  EXPECT_FIXTURE_ERROR(insert_after(t, "\"case\": {", "\"shape\": [1, 1],"), "case.shape");
  EXPECT_FIXTURE_ERROR(insert_after(t, "\"inputs\": {", "\"src\": [],"), "inputs.src");
  EXPECT_FIXTURE_ERROR(insert_after(t, "\"provenance\": {", "\"seed\": 2,"), "provenance.seed");
  EXPECT_FIXTURE_ERROR(insert_after(t, "\"bound\": {", "\"lenient\": [],"),
                       "expected.diff_src.bound.lenient");
  const std::string r = valid_results();
  EXPECT_RESULTS_ERROR(insert_after(r, "{", "\"status\": \"failed\","), "status");
  EXPECT_RESULTS_ERROR(insert_after(r, "\"outputs\": {", "\"dst\": [],"), "outputs.dst");
}

// ---- Missing fields --------------------------------------------------------------------------

TEST(FixtureLoader, MissingFields) {
  for (const char* key : {"schema", "schema_version", "case", "inputs", "refusal", "expected"}) {
    EXPECT_FIXTURE_ERROR(mutate(backward(), [&](json& j) { j.erase(key); }), key);
  }
  for (const char* key : {"catalog_case", "op", "mode", "types", "tier", "step", "layout", "shape",
                          "eps", "momentum", "convention", "affine", "track_running"}) {
    EXPECT_FIXTURE_ERROR(mutate(backward(), [&](json& j) { j["case"].erase(key); }),
                         std::string("case.") + key);
  }
  // Each mode's required inputs.
  for (const char* key : {"src", "diff_dst", "gamma", "beta"}) {
    EXPECT_FIXTURE_ERROR(mutate(backward(), [&](json& j) { j["inputs"].erase(key); }),
                         std::string("inputs.") + key);
  }
  ASSERT_TRUE(json::parse(training())["case"]["track_running"].get<bool>());
  for (const char* key :
       {"src", "gamma", "beta", "running_mean", "running_var", "num_batches_tracked"}) {
    EXPECT_FIXTURE_ERROR(mutate(training(), [&](json& j) { j["inputs"].erase(key); }),
                         std::string("inputs.") + key);
  }
  for (const char* key : {"src", "running_mean", "running_var"}) {
    EXPECT_FIXTURE_ERROR(mutate(inference(), [&](json& j) { j["inputs"].erase(key); }),
                         std::string("inputs.") + key);
  }
  for (const char* key : {"values", "classes", "exact", "ulp_exp", "bound"}) {
    EXPECT_FIXTURE_ERROR(mutate(backward(), [&](json& j) { j["expected"]["diff_src"].erase(key); }),
                         std::string("expected.diff_src.") + key);
  }
  for (const char* key : {"strict", "standard", "lenient"}) {
    EXPECT_FIXTURE_ERROR(
        mutate(backward(), [&](json& j) { j["expected"]["diff_beta"]["bound"].erase(key); }),
        std::string("expected.diff_beta.bound.") + key);
  }
  // The provenance block is informative: a fixture without it still loads.
  EXPECT_NO_THROW(
      (void)parse_fixture(mutate(backward(), [](json& j) { j.erase("provenance"); }), k_file));
}

// ---- Wrong types -----------------------------------------------------------------------------

TEST(FixtureLoader, WrongTypes) {
  const std::string& t = backward();
  struct edit {
    std::string field;
    std::function<void(json&)> apply;
  };
  const std::vector<edit> edits = {
      {"case", [](json& j) { j["case"] = json::array(); }},
      {"case", [](json& j) { j["case"] = "case"; }},
      {"inputs", [](json& j) { j["inputs"] = json::array(); }},
      {"expected", [](json& j) { j["expected"] = json::array(); }},
      {"expected", [](json& j) { j["expected"] = nullptr; }},
      {"refusal", [](json& j) { j["refusal"] = 5; }},
      {"refusal", [](json& j) { j["refusal"] = false; }},
      {"case.catalog_case", [](json& j) { j["case"]["catalog_case"] = 7; }},
      {"case.op", [](json& j) { j["case"]["op"] = json::array({"forward_training"}); }},
      {"case.step", [](json& j) { j["case"]["step"] = "0"; }},
      {"case.step", [](json& j) { j["case"]["step"] = 0.5; }},
      {"case.step", [](json& j) { j["case"]["step"] = -1; }},
      {"case.shape", [](json& j) { j["case"]["shape"] = "2x3x2x2"; }},
      {"case.shape", [](json& j) { j["case"]["shape"][0] = "2"; }},
      {"case.shape", [](json& j) { j["case"]["shape"][1] = 3.0; }},
      {"case.eps", [](json& j) { j["case"]["eps"] = 1e-5; }},  // number for a hex string
      {"case.momentum", [](json& j) { j["case"]["momentum"] = 0.1; }},
      {"case.convention", [](json& j) { j["case"]["convention"] = json::object(); }},
      {"case.affine", [](json& j) { j["case"]["affine"] = "true"; }},
      {"case.affine", [](json& j) { j["case"]["affine"] = 1; }},
      {"case.track_running", [](json& j) { j["case"]["track_running"] = nullptr; }},
      {"inputs.src", [](json& j) { j["inputs"]["src"] = json::object(); }},
      {"inputs.src", [](json& j) { j["inputs"]["src"] = "0x1p+0"; }},
      {"inputs.src[0]", [](json& j) { j["inputs"]["src"][0] = true; }},
      {"inputs.src[1]", [](json& j) { j["inputs"]["src"][1] = nullptr; }},
      {"inputs.gamma[0]", [](json& j) { j["inputs"]["gamma"][0] = json::array({"0x1p+0"}); }},
      {"expected.diff_src", [](json& j) { j["expected"]["diff_src"] = json::array(); }},
      {"expected.diff_src.values[0]",
       [](json& j) { j["expected"]["diff_src"]["values"][0] = "x"; }},
      {"expected.diff_src.classes",
       [](json& j) { j["expected"]["diff_src"]["classes"] = json::array(); }},
      {"expected.diff_src.exact[0]", [](json& j) { j["expected"]["diff_src"]["exact"][0] = 1.0; }},
      {"expected.diff_src.ulp_exp[0]",
       [](json& j) { j["expected"]["diff_src"]["ulp_exp"][0] = "-20"; }},
      {"expected.diff_src.ulp_exp[0]",
       [](json& j) { j["expected"]["diff_src"]["ulp_exp"][0] = -20.5; }},
      {"expected.diff_src.bound",
       [](json& j) { j["expected"]["diff_src"]["bound"] = json::array(); }},
      {"expected.diff_src.bound.strict[0]",
       [](json& j) { j["expected"]["diff_src"]["bound"]["strict"][0] = 1e-7; }},
  };
  for (const auto& e : edits) EXPECT_FIXTURE_ERROR(mutate(t, e.apply), e.field);
}

TEST(FixtureLoader, UnknownEnumerations) {
  const std::string& t = backward();
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["op"] = "sideways"; }), "case.op");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["mode"] = "sideways"; }), "case.mode");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["tier"] = "Exact"; }), "case.tier");
  // A strided view needs its strides (and only a strided view has them).
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["layout"] = "strided"; }), "case.strides");
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [](json& j) {
                                j["case"]["strides"] = json::array({1, 2});
                              }),
                       "case.strides");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["layout"] = ""; }), "case.layout");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["convention"] = "nope"; }),
                       "case.convention");
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [](json& j) {
                                std::string c = j["expected"]["diff_src"]["classes"];
                                c[0] = 'x';
                                j["expected"]["diff_src"]["classes"] = c;
                              }),
                       "expected.diff_src.classes");
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [](json& j) {
                                std::string c = j["expected"]["diff_src"]["classes"];
                                c[0] = '\0';
                                j["expected"]["diff_src"]["classes"] = c;
                              }),
                       "expected.diff_src.classes");
  // A layout whose rank does not match the shape.
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["layout"] = "ncdhw"; }), "case.shape");
}

// ---- Shape and data lengths ------------------------------------------------------------------

TEST(FixtureLoader, ShapeDataMismatch) {
  const std::string& t = backward();
  auto drop_last = [](json& a) { a.erase(a.size() - 1); };
  auto add_one = [](json& a) { a.push_back("0x1p+0"); };
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { drop_last(j["inputs"]["src"]); }), "inputs.src");
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { add_one(j["inputs"]["src"]); }), "inputs.src");
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { drop_last(j["inputs"]["diff_dst"]); }),
                       "inputs.diff_dst");
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { add_one(j["inputs"]["gamma"]); }), "inputs.gamma");
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { drop_last(j["inputs"]["beta"]); }), "inputs.beta");
  EXPECT_FIXTURE_ERROR(mutate(training(), [&](json& j) { add_one(j["inputs"]["running_var"]); }),
                       "inputs.running_var");
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { drop_last(j["expected"]["diff_src"]["values"]); }),
                       "expected.diff_src.values");
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [](json& j) {
                                std::string c = j["expected"]["diff_src"]["classes"];
                                j["expected"]["diff_src"]["classes"] = c + "f";
                              }),
                       "expected.diff_src.classes");
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [](json& j) {
                                std::string c = j["expected"]["diff_src"]["classes"];
                                j["expected"]["diff_src"]["classes"] = c.substr(1);
                              }),
                       "expected.diff_src.classes");
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { drop_last(j["expected"]["diff_src"]["exact"]); }),
                       "expected.diff_src.exact");
  EXPECT_FIXTURE_ERROR(
      mutate(t, [&](json& j) { j["expected"]["diff_src"]["ulp_exp"].push_back(0); }),
      "expected.diff_src.ulp_exp");
  EXPECT_FIXTURE_ERROR(
      mutate(t, [&](json& j) { drop_last(j["expected"]["diff_beta"]["bound"]["standard"]); }),
      "expected.diff_beta.bound.standard");
  // Per-channel outputs have C elements.
  EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { add_one(j["expected"]["diff_gamma"]["values"]); }),
                       "expected.diff_gamma.values");
  // The shape changes, the data does not.
  EXPECT_FIXTURE_ERROR(
      mutate(t, [](json& j) { j["case"]["shape"][0] = j["case"]["shape"][0].get<int>() + 1; }),
      "inputs.src");
  EXPECT_FIXTURE_ERROR(
      mutate(t, [](json& j) { j["case"]["shape"][1] = j["case"]["shape"][1].get<int>() + 1; }),
      "inputs.src");
}

TEST(FixtureLoader, AbsurdSizesAreRefusedBeforeAllocating) {
  const std::string& t = backward();
  constexpr std::int64_t big = std::int64_t{1} << 62;
  const std::vector<json> shapes = {
      json::array({big, 1}),
      json::array({1, big}),
      json::array({std::int64_t{1} << 31, std::int64_t{1} << 31}),
      json::array({65536, 65536}),  // each extent within the limit, the product not
      json::array({8192, 8192, 8192}),
      json::array({(std::int64_t{1} << 26) + 1, 1}),
      json::array({std::numeric_limits<std::uint64_t>::max(), 1}),
      json::array({std::uint64_t{1} << 63, std::uint64_t{1} << 63}),  // wraps to 0 in uint64
      json::array({std::int64_t{1} << 32, std::int64_t{1} << 32, 0}),
      json::array({0, std::int64_t{1} << 26, std::int64_t{1} << 26, std::int64_t{1} << 26}),
      json::array({-1, 3}),
      json::array({3, -1}),
      json::array({2, 3, -2, -2}),
      json::array(
          {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::min()}),
      json::array({2, 0}),  // no channels
      json::array({2}),
      json::array(),
      json::array({1, 1, 1, 1, 1, 1}),
      json::array({1e300, 1}),
  };
  for (const auto& shape : shapes) {
    SCOPED_TRACE(shape.dump());
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["case"]["shape"] = shape; }), "case.shape");
  }
  // The same claims with the layout adjusted to the rank.
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [&](json& j) {
                                j["case"]["layout"] = "nc";
                                j["case"]["shape"] = json::array({big, big});
                              }),
                       "case.shape");
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [&](json& j) {
                                j["case"]["layout"] = "ncdhw";
                                j["case"]["shape"] = json::array({1024, 1024, 1024, 1024, 1024});
                              }),
                       "case.shape");
  // Within the element limit: refused because the arrays are short, before reserving anything.
  EXPECT_FIXTURE_ERROR(mutate(t,
                              [&](json& j) {
                                j["case"]["layout"] = "nc";
                                j["case"]["shape"] = json::array({1, std::int64_t{1} << 26});
                              }),
                       "inputs.src");
}

TEST(FixtureLoader, CountersOutOfRange) {
  const std::string& t = training();
  for (const json& v : {json(-1), json((std::int64_t{1} << 62) + 1),
                        json(std::numeric_limits<std::uint64_t>::max()), json("1"), json(1.0)}) {
    SCOPED_TRACE(v.dump());
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["inputs"]["num_batches_tracked"] = v; }),
                         "inputs.num_batches_tracked");
  }
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["case"]["step"] = 1000001; }), "case.step");
}

// ---- Numbers ---------------------------------------------------------------------------------

TEST(FixtureLoader, BadHexFloats) {
  const std::string& t = backward();
  for (const char* bad : {"0x1.8p+1x", "1e999999", "", "infinity", "0x", " 0x1p+0", "nan(1)",
                          "0x1p+128", "-", "1e", "Infinity", "0x1p+0 "}) {
    SCOPED_TRACE(bad);
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["inputs"]["src"][0] = bad; }), "inputs.src[0]");
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["expected"]["diff_src"]["values"][2] = bad; }),
                         "expected.diff_src.values[2]");
  }
  // JSON numbers beyond float32's range are not floats either.
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["inputs"]["src"][0] = 1e300; }), "inputs.src[0]");
  EXPECT_FIXTURE_ERROR(mutate(t, [](json& j) { j["inputs"]["src"][0] = -1e39; }), "inputs.src[0]");
  // JSON numbers within range, "nan", "inf" and "-inf" are accepted.
  const auto fx = parse_fixture(mutate(t,
                                       [](json& j) {
                                         j["inputs"]["src"][0] = 0.5;
                                         j["inputs"]["src"][1] = "-inf";
                                         j["inputs"]["src"][2] = "nan";
                                       }),
                                k_file);
  EXPECT_EQ(fx.inputs.at("src")[0], 0.5F);
  EXPECT_EQ(fx.inputs.at("src")[1], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fx.inputs.at("src")[2]));
}

TEST(FixtureLoader, BadEpsAndMomentum) {
  const std::string& t = backward();
  for (const char* bad :
       {"1e999999", "-0x1p-10", "infinity", "inf", "nan", "", "0x", " 1e-5", "1e-5x"}) {
    SCOPED_TRACE(bad);
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["case"]["eps"] = bad; }), "case.eps");
  }
  for (const char* bad : {"0x1p+1", "-0x1p-10", "inf", "nan", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["case"]["momentum"] = bad; }), "case.momentum");
  }
  EXPECT_NO_THROW(
      (void)parse_fixture(mutate(t, [](json& j) { j["case"]["momentum"] = nullptr; }), k_file));
  EXPECT_NO_THROW(
      (void)parse_fixture(mutate(t, [](json& j) { j["case"]["eps"] = "0x0p+0"; }), k_file));
}

TEST(FixtureLoader, UlpExponentOutOfRange) {
  const std::string& t = backward();
  for (const json& v :
       {json(401), json(-401), json(100000), json(std::numeric_limits<std::uint64_t>::max()),
        json(std::numeric_limits<std::int64_t>::min()), json(1.5), json("3"), json(nullptr)}) {
    SCOPED_TRACE(v.dump());
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["expected"]["diff_src"]["ulp_exp"][0] = v; }),
                         "expected.diff_src.ulp_exp[0]");
  }
  EXPECT_NO_THROW((void)parse_fixture(
      mutate(t, [](json& j) { j["expected"]["diff_src"]["ulp_exp"][0] = -400; }), k_file));
}

TEST(FixtureLoader, BadBounds) {
  const std::string& t = backward();
  for (const char* bad : {"-0x1p+0", "-inf", "", "x", " 0x1p+0", "0x1p+0z", "1e999999", "infinity",
                          "nan(2)", "-1e-300"}) {
    SCOPED_TRACE(bad);
    EXPECT_FIXTURE_ERROR(
        mutate(t, [&](json& j) { j["expected"]["diff_src"]["bound"]["strict"][0] = bad; }),
        "expected.diff_src.bound.strict[0]");
    EXPECT_FIXTURE_ERROR(
        mutate(t, [&](json& j) { j["expected"]["diff_gamma"]["bound"]["lenient"][1] = bad; }),
        "expected.diff_gamma.bound.lenient[1]");
  }
  for (const char* ok : {"nan", "inf", "0x0p+0", "-0x0p+0", "1e-3"}) {
    SCOPED_TRACE(ok);
    EXPECT_NO_THROW((void)parse_fixture(
        mutate(t, [&](json& j) { j["expected"]["diff_src"]["bound"]["strict"][0] = ok; }), k_file));
  }
}

TEST(FixtureLoader, ExactValuesOfJudgedElementsAreDecimals) {
  const std::string& t = backward();
  const std::size_t i = first_finite(t, "diff_src");
  const std::string field = "expected.diff_src.exact[" + std::to_string(i) + "]";
  for (const char* bad : {"", "abc", "nan", "inf", "1e99999", "1.", ".5", "1e", "--1", "0x1p+0",
                          "1.5e+3 ", "undefined"}) {
    SCOPED_TRACE(bad);
    EXPECT_FIXTURE_ERROR(mutate(t, [&](json& j) { j["expected"]["diff_src"]["exact"][i] = bad; }),
                         field);
  }
  EXPECT_FIXTURE_ERROR(
      mutate(t, [&](json& j) { j["expected"]["diff_src"]["exact"][i] = std::string(200, '1'); }),
      field);
  for (const char* ok : {"0", "-1.25", "1.5e-3", "2E+10", "-0.0e0"}) {
    SCOPED_TRACE(ok);
    EXPECT_NO_THROW((void)parse_fixture(
        mutate(t, [&](json& j) { j["expected"]["diff_src"]["exact"][i] = ok; }), k_file));
  }
}

// ---- Results files ---------------------------------------------------------------------------

TEST(FixtureLoader, MalformedResults) {
  const std::string r = valid_results();
  auto m = [&](const std::function<void(json&)>& f) { return mutate(r, f); };
  EXPECT_RESULTS_ERROR(m([](json& j) { j["schema"] = "bnoracle.fixture"; }), "schema");
  EXPECT_RESULTS_ERROR(m([](json& j) { j.erase("schema"); }), "schema");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["schema_version"] = 2; }), "schema_version");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["schema_version"] = "1"; }), "schema_version");
  EXPECT_RESULTS_ERROR(m([](json& j) { j.erase("schema_version"); }), "schema_version");
  EXPECT_RESULTS_ERROR(m([](json& j) { j.erase("id"); }), "id");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["id"] = 3; }), "id");
  EXPECT_RESULTS_ERROR(m([](json& j) { j.erase("status"); }), "status");
  for (const char* bad : {"OK", "passed", "", "ok "}) {
    EXPECT_RESULTS_ERROR(m([&](json& j) { j["status"] = bad; }), "status");
  }
  EXPECT_RESULTS_ERROR(m([](json& j) { j["status"] = json::array({"ok"}); }), "status");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["message"] = 5; }), "message");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["num_batches_tracked"] = -1; }), "num_batches_tracked");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["num_batches_tracked"] = "3"; }), "num_batches_tracked");
  EXPECT_RESULTS_ERROR(
      m([](json& j) { j["num_batches_tracked"] = std::numeric_limits<std::uint64_t>::max(); }),
      "num_batches_tracked");
  EXPECT_RESULTS_ERROR(m([](json& j) { j.erase("outputs"); }), "outputs");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["outputs"] = json::array(); }), "outputs");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["outputs"] = "dst"; }), "outputs");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["outputs"] = nullptr; }), "outputs");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["outputs"]["dst"] = json::object(); }), "outputs.dst");
  EXPECT_RESULTS_ERROR(m([](json& j) { j["outputs"]["dst"] = "0x1p+0"; }), "outputs.dst");
  for (const json& v : {json(true), json(nullptr), json("abc"), json("1e999999"), json(""),
                        json("infinity"), json(1e300), json::array(), json::object()}) {
    SCOPED_TRACE(v.dump());
    EXPECT_RESULTS_ERROR(m([&](json& j) { j["outputs"]["dst"][1] = v; }), "outputs.dst[1]");
  }
  // Outputs are read only when the status is "ok".
  const auto refused = parse_results(m([](json& j) {
                                       j["status"] = "refused";
                                       j["outputs"] = 5;
                                     }),
                                     k_file);
  EXPECT_EQ(refused.status, "refused");
  EXPECT_TRUE(refused.outputs.empty());
}

// ---- The command line: exit code 2, file and field on stderr --------------------------------

class FixtureLoaderCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("bnoracle_fixture_loader_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "fixtures" / "bad");
    std::filesystem::create_directories(dir_ / "results" / "bad");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void write(const std::filesystem::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
    ASSERT_TRUE(f.good()) << p;
  }
  // Runs `bnoracle verify` on the two directories; returns the exit code, fills `output`.
  int verify(std::string& output) const {
    const auto out = dir_ / "out.txt";
    const std::string cmd = std::string("'") + BNORACLE_EXE + "' verify --fixtures '" +
                            (dir_ / "fixtures").string() + "' --results '" +
                            (dir_ / "results").string() + "' >'" + out.string() + "' 2>&1";
    const int status = std::system(cmd.c_str());
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    output = ss.str();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::filesystem::path dir_;
};

TEST_F(FixtureLoaderCli, MalformedFixtureExitsTwoNamingFileAndField) {
  const auto path = dir_ / "fixtures" / "bad" / "case.json";
  write(path, mutate(backward(), [](json& j) { j["case"].erase("op"); }));
  std::string out;
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find(path.string()), std::string::npos) << out;
  EXPECT_NE(out.find("case.op"), std::string::npos) << out;

  // A layer norm over more axes than the (n, c) shape has: refused, naming the descriptor.
  write(path, mutate(backward(), [](json& j) {
          j["case"]["op"] = {{"kind", "layer_norm"},
                             {"normalized_axes", 2},
                             {"groups", 0},
                             {"centred", true},
                             {"params", "per_normalized_element"},
                             {"weight_offset", false},
                             {"running_stats", false}};
        }));
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find("case.op: op: normalized_axes=2 exceeds"), std::string::npos) << out;

  write(path, mutate(backward(), [](json& j) {
          j["case"]["shape"] = json::array({std::int64_t{1} << 62, 1});
        }));
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find("case.shape"), std::string::npos) << out;

  write(path, backward().substr(0, backward().size() / 2));
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find(path.string()), std::string::npos) << out;
}

// Results that reproduce the fixture's goldens exactly (they pass at every level).
std::string golden_results(const std::string& fixture, const std::string& id) {
  const json f = json::parse(fixture);
  json r{{"schema", "bnoracle.results"}, {"schema_version", 1}, {"id", id}, {"status", "ok"}};
  r["outputs"] = json::object();
  for (const auto& [name, out] : f.at("expected").items()) r["outputs"][name] = out.at("values");
  return r.dump();
}

// A results file that cannot be used fails its own case; the other cases are still judged.
TEST_F(FixtureLoaderCli, MalformedResultsFailOnlyTheirOwnCaseNamingFileAndField) {
  write(dir_ / "fixtures" / "bad" / "case.json", backward());
  std::filesystem::create_directories(dir_ / "fixtures" / "good");
  std::filesystem::create_directories(dir_ / "results" / "good");
  write(dir_ / "fixtures" / "good" / "case.json", backward());
  write(dir_ / "results" / "good" / "case.json", golden_results(backward(), "good/case"));
  const auto path = dir_ / "results" / "bad" / "case.json";
  write(path, mutate(valid_results(), [](json& j) { j["status"] = "great"; }));
  std::string out;
  EXPECT_EQ(verify(out), 1) << out;
  EXPECT_NE(out.find("unusable results file: " + path.string()), std::string::npos) << out;
  EXPECT_NE(out.find("status"), std::string::npos) << out;
  EXPECT_NE(out.find("1 passed, 1 failed"), std::string::npos) << out;

  // Too few values in an output: the same, not an exit for the whole run.
  write(path, mutate(golden_results(backward(), "bad/case"),
                     [](json& j) { j["outputs"]["diff_src"].erase(0); }));
  EXPECT_EQ(verify(out), 1) << out;
  EXPECT_NE(out.find("outputs.diff_src"), std::string::npos) << out;
  EXPECT_NE(out.find("1 passed, 1 failed"), std::string::npos) << out;
}

// Results whose id names another fixture are not judged against this one.
TEST_F(FixtureLoaderCli, ResultsForAnotherFixtureFailTheirCase) {
  write(dir_ / "fixtures" / "bad" / "case.json", backward());
  write(dir_ / "results" / "bad" / "case.json", golden_results(backward(), "other/case"));
  std::string out;
  EXPECT_EQ(verify(out), 1) << out;
  EXPECT_NE(out.find("the results are for fixture 'other/case', not 'bad/case'"), std::string::npos)
      << out;
  // The same file with the right id passes: the id is what failed.
  write(dir_ / "results" / "bad" / "case.json", golden_results(backward(), "bad/case"));
  EXPECT_EQ(verify(out), 0) << out;
}

// A fault that `bnoracle results` recorded ("fault": true) is a kernel fault again in verify.
TEST_F(FixtureLoaderCli, RecordedFaultIsAFaultInVerify) {
  write(dir_ / "fixtures" / "bad" / "case.json", backward());
  json r{{"schema", "bnoracle.results"},
         {"schema_version", 1},
         {"id", "bad/case"},
         {"status", "failed"},
         {"message", "crashed with SIGSEGV"},
         {"fault", true}};
  write(dir_ / "results" / "bad" / "case.json", r.dump());
  std::string out;
  EXPECT_EQ(verify(out), 3) << out;
  EXPECT_NE(out.find("verdict: KERNEL FAULT"), std::string::npos) << out;
  // Without the fault flag, a reported failure is a failure (exit 1).
  r.erase("fault");
  write(dir_ / "results" / "bad" / "case.json", r.dump());
  EXPECT_EQ(verify(out), 1) << out;
}

// Results that are all "unsupported" judge nothing: NOTHING JUDGED, exit 5, never CONFORMANT.
TEST_F(FixtureLoaderCli, OnlyUnsupportedResultsJudgeNothing) {
  write(dir_ / "fixtures" / "bad" / "case.json", backward());
  const json r{{"schema", "bnoracle.results"},
               {"schema_version", 1},
               {"id", "bad/case"},
               {"status", "unsupported"}};
  write(dir_ / "results" / "bad" / "case.json", r.dump());
  std::string out;
  EXPECT_EQ(verify(out), 5) << out;
  EXPECT_NE(out.find("verdict: NOTHING JUDGED"), std::string::npos) << out;
  EXPECT_EQ(out.find("verdict: CONFORMANT"), std::string::npos) << out;
}

// A fixture that expects no refusal and no output would judge nothing: it is malformed.
TEST_F(FixtureLoaderCli, FixtureWithoutExpectedOutputsIsRejected) {
  const auto path = dir_ / "fixtures" / "bad" / "case.json";
  write(path, mutate(backward(), [](json& j) { j["expected"] = json::object(); }));
  write(dir_ / "results" / "bad" / "case.json", golden_results(backward(), "bad/case"));
  std::string out;
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find(path.string()), std::string::npos) << out;
  EXPECT_NE(out.find("expected.diff_src"), std::string::npos) << out;
}

}  // namespace
