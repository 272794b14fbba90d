// The shared tests/behavior scenarios through the C++ API. The scenario
// directory is read when the test program starts (at test time) and one
// GoogleTest test is registered per scenario and backend.
//
// usage: cpp_behavior_test --behavior-dir=DIR [gtest flags]
#include <cjson/cJSON.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <memwatch.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::size_t page() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Integer or "Np" / "Np+M" / "Np-M".
long long size_of(const cJSON* v) {
  if (cJSON_IsNumber(v)) return static_cast<long long>(v->valuedouble);
  if (!cJSON_IsString(v)) throw std::runtime_error("bad size spec");
  std::string s = v->valuestring;
  std::size_t p = s.find('p');
  if (p == std::string::npos) return std::stoll(s);
  long long val = std::stoll(s.substr(0, p)) * static_cast<long long>(page());
  if (p + 1 < s.size()) {
    long long m = std::stoll(s.substr(p + 2));
    val = s[p + 1] == '+' ? val + m : val - m;
  }
  return val;
}

std::vector<uint8_t> hex(const std::string& s) {
  if (s.size() % 2) throw std::runtime_error("odd hex: " + s);
  std::vector<uint8_t> out;
  for (std::size_t i = 0; i < s.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoul(s.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<uint8_t> value_of(const cJSON* v) {
  if (cJSON_IsString(v)) return hex(v->valuestring);
  auto len = static_cast<std::size_t>(size_of(cJSON_GetObjectItemCaseSensitive(v, "len")));
  const cJSON* f = cJSON_GetObjectItemCaseSensitive(v, "fill");
  std::vector<uint8_t> out(len, f ? hex(f->valuestring).at(0) : 0);
  const cJSON* p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(v, "patches")) {
    auto off = static_cast<std::size_t>(size_of(cJSON_GetArrayItem(p, 0)));
    auto bytes = hex(cJSON_GetArrayItem(p, 1)->valuestring);
    if (off + bytes.size() > len) throw std::runtime_error("patch out of range");
    std::copy(bytes.begin(), bytes.end(), out.begin() + static_cast<long>(off));
  }
  return out;
}

std::string show(const std::optional<std::vector<uint8_t>>& v) {
  if (!v) return "(absent)";
  std::ostringstream o;
  if (v->size() > 64) {
    o << "len=" << v->size() << " nonzero:";
    int shown = 0;
    for (std::size_t i = 0; i < v->size() && shown < 8; i++)
      if ((*v)[i] != (*v)[0]) { o << " [" << i << "]=" << std::hex << int((*v)[i]) << std::dec; shown++; }
    return o.str();
  }
  for (auto b : *v) { char t[3]; snprintf(t, sizeof t, "%02x", b); o << t; }
  return o.str();
}

std::string str_or(const cJSON* o, const char* k) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

struct Buffer {
  uint8_t* mem = nullptr;
  std::size_t size = 0, map_len = 0;
};

class ScenarioTest : public testing::Test {
 public:
  ScenarioTest(std::shared_ptr<cJSON> sc, std::string backend) : sc_(std::move(sc)), backend_(std::move(backend)) {}

  void TestBody() override {
    const cJSON* sc = sc_.get();
    memwatch::Options o;
    o.backend = backend_;
    const cJSON* opts = cJSON_GetObjectItemCaseSensitive(sc, "options");
    if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(opts, "max_value_bytes")) o.max_value_bytes = size_of(v);
    if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(opts, "preview_bytes")) o.preview_bytes = size_of(v);
    if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(opts, "writable_window_ms")) o.writable_window = std::chrono::milliseconds(size_of(v));
    if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(opts, "snapshots")) o.snapshots = cJSON_IsTrue(v);

    std::map<std::string, Buffer> bufs;
    const cJSON* b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(sc, "buffers")) {
      Buffer buf;
      buf.size = static_cast<std::size_t>(size_of(cJSON_GetObjectItemCaseSensitive(b, "size")));
      buf.map_len = (buf.size + page() - 1) / page() * page();
      void* m = mmap(nullptr, buf.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      ASSERT_NE(m, MAP_FAILED);
      buf.mem = static_cast<uint8_t*>(m);
      std::string fill = str_or(b, "fill");
      std::memset(buf.mem, fill.empty() ? 0 : hex(fill).at(0), buf.size);
      bufs[str_or(b, "name")] = buf;
    }
    struct Unmap {
      std::map<std::string, Buffer>& b;
      ~Unmap() { for (auto& [k, v] : b) munmap(v.mem, v.map_len); }
    } unmap{bufs};

    memwatch::Watcher w(o);
    std::map<std::string, memwatch::RegionId> regions;
    const cJSON* r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(sc, "regions")) {
      Buffer& buf = bufs.at(str_or(r, "buffer"));
      auto off = size_of(cJSON_GetObjectItemCaseSensitive(r, "offset"));
      auto len = size_of(cJSON_GetObjectItemCaseSensitive(r, "length"));
      std::optional<std::string_view> md;
      std::string mds = str_or(r, "metadata");
      if (cJSON_GetObjectItemCaseSensitive(r, "metadata")) md = mds;
      regions[str_or(r, "key")] = w.watch(buf.mem + off, static_cast<std::size_t>(len), str_or(r, "name"), md);
    }

    int idx = 0;
    const cJSON* st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(sc, "steps")) {
      SCOPED_TRACE("step " + std::to_string(idx++));
      const cJSON* a;
      if ((a = cJSON_GetObjectItemCaseSensitive(st, "write"))) {
        Buffer& buf = bufs.at(str_or(a, "buffer"));
        auto off = static_cast<std::size_t>(size_of(cJSON_GetObjectItemCaseSensitive(a, "offset")));
        if (cJSON_GetObjectItemCaseSensitive(a, "hex")) {
          auto bytes = hex(str_or(a, "hex"));
          ASSERT_LE(off + bytes.size(), buf.size);
          for (std::size_t i = 0; i < bytes.size(); i++) reinterpret_cast<volatile uint8_t*>(buf.mem)[off + i] = bytes[i];
        } else {
          auto len = static_cast<std::size_t>(size_of(cJSON_GetObjectItemCaseSensitive(a, "len")));
          ASSERT_LE(off + len, buf.size);
          std::memset(buf.mem + off, hex(str_or(a, "byte")).at(0), len);
        }
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "check"))) {
        expect_events(w.check_changes(), a, regions);
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "watch_error"))) {
        const uint8_t* addr = nullptr;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "null")))
          addr = bufs.at(str_or(a, "buffer")).mem + size_of(cJSON_GetObjectItemCaseSensitive(a, "offset"));
        auto len = static_cast<std::size_t>(size_of(cJSON_GetObjectItemCaseSensitive(a, "length")));
        expect_error(str_or(a, "expect"), [&] { w.watch(addr, len, "bad"); });
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "check_error"))) {
        expect_error(str_or(a, "expect"), [&] { w.check_changes(); });
      } else if (cJSON_GetObjectItemCaseSensitive(st, "close")) {
        w.close();
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "stats"))) {
        auto fields = stats_fields(w.stats());
        const cJSON* f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(a, "fields"))
            EXPECT_TRUE(fields.count(f->valuestring)) << "stats field " << f->valuestring << " missing";
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(a, "equal")) {
          ASSERT_TRUE(fields.count(f->string)) << "stats field " << f->string << " missing";
          EXPECT_EQ(fields.at(f->string), cJSON_IsString(f) ? std::string(f->valuestring) : std::to_string(static_cast<long long>(f->valuedouble)))
              << "stats field " << f->string;
        }
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "set_callback"))) {
        if (cJSON_IsTrue(a)) {
          w.set_callback([this](const memwatch::ChangeEvent& e) {
            std::lock_guard<std::mutex> g(mu_);
            delivered_.push_back(e);
          });
        } else {
          w.set_callback(nullptr);
        }
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "check_callback"))) {
        EXPECT_TRUE(w.check_changes().empty()) << "with a callback, check_changes returned events";
        std::vector<memwatch::ChangeEvent> got;
        {
          std::lock_guard<std::mutex> g(mu_);
          got.swap(delivered_);
        }
        expect_events(got, a, regions);
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "unwatch"))) {
        EXPECT_EQ(w.unwatch(regions.at(str_or(a, "region"))), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "expect")));
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "constants"))) {
        const cJSON* ms = cJSON_GetObjectItemCaseSensitive(a, "exit_flush_timeout_ms");
        ASSERT_TRUE(cJSON_IsNumber(ms)) << "bad constants step";
        EXPECT_EQ(memwatch::exit_flush_timeout(), std::chrono::milliseconds(static_cast<long long>(ms->valuedouble)));
      } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "unwatch_unknown"))) {
        EXPECT_EQ(w.unwatch(4000000000u), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "expect")));
      } else {
        FAIL() << "unknown step kind";
      }
    }
  }

  // The events of one check match the expected list: same count, one per region.
  void expect_events(const std::vector<memwatch::ChangeEvent>& events, const cJSON* a,
                     const std::map<std::string, memwatch::RegionId>& regions) {
    ASSERT_EQ(events.size(), static_cast<std::size_t>(cJSON_GetArraySize(a)));
    const cJSON* e;
    cJSON_ArrayForEach(e, a) {
      std::string key = str_or(e, "region");
      auto id = regions.at(key);
      auto n = std::count_if(events.begin(), events.end(), [&](const auto& ev) { return ev.region_id == id; });
      ASSERT_EQ(n, 1) << "events for region " << key;
      const auto& ev = *std::find_if(events.begin(), events.end(), [&](const auto& x) { return x.region_id == id; });
      EXPECT_EQ(ev.adapter_id, 7u);
      if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(e, "variable_name")) EXPECT_EQ(ev.variable_name, v->valuestring);
      if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(e, "how_big")) EXPECT_EQ(ev.how_big, static_cast<std::size_t>(size_of(v)));
      if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(e, "coalesced")) EXPECT_EQ(ev.coalesced, static_cast<std::uint32_t>(v->valuedouble));
      if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(e, "changed_ranges")) {
        std::vector<memwatch::ByteRange> want;
        const cJSON* rg;
        cJSON_ArrayForEach(rg, v) want.push_back({static_cast<std::size_t>(size_of(cJSON_GetArrayItem(rg, 0))),
                                                  static_cast<std::size_t>(size_of(cJSON_GetArrayItem(rg, 1)))});
        EXPECT_TRUE(ev.changed_ranges == want) << "region " << key << ": changed_ranges differ (" << ev.changed_ranges.size()
                                               << " ranges, first at " << (ev.changed_ranges.empty() ? 0 : ev.changed_ranges[0].offset) << ")";
      }
      auto cmp = [&](const char* field, const std::optional<std::vector<uint8_t>>& got) {
        const cJSON* v = cJSON_GetObjectItemCaseSensitive(e, field);
        if (!v) return;
        std::optional<std::vector<uint8_t>> want;
        if (!cJSON_IsNull(v)) want = value_of(v);
        EXPECT_TRUE(got == want) << "region " << key << " " << field << ": expected " << show(want) << ", got " << show(got);
      };
      cmp("old_value", ev.old_value);
      cmp("new_value", ev.new_value);
      cmp("old_preview", ev.old_preview);
      cmp("new_preview", ev.new_preview);
      if (const cJSON* v = cJSON_GetObjectItemCaseSensitive(e, "metadata")) {
        if (cJSON_IsNull(v)) EXPECT_FALSE(ev.metadata.has_value());
        else EXPECT_EQ(ev.metadata.value_or("(absent)"), v->valuestring);
      }
    }
  }

  // The engine's error kind name of a memwatch exception (Error::kind_name()).
  static std::string kind_of(const memwatch::Error& e) {
    switch (e.code()) {
      case memwatch::ErrorCode::InvalidArgument: return "invalid_argument";
      case memwatch::ErrorCode::Unmapped: return "unmapped";
      case memwatch::ErrorCode::ReadOnly: return "read_only";
      case memwatch::ErrorCode::Overlap: return "overlap";
      case memwatch::ErrorCode::Unsupported: return "unsupported";
      case memwatch::ErrorCode::Closed: return "closed";
      case memwatch::ErrorCode::Os: return "os";
      default: return "internal";
    }
  }

  template <class F>
  static void expect_error(const std::string& kind, F call) {
    try {
      call();
      ADD_FAILURE() << "expected a " << kind << " error, the call succeeded";
    } catch (const memwatch::Error& e) {
      EXPECT_EQ(kind_of(e), kind) << e.what();
    }
  }

  // Every stats field by its snake_case name, as text.
  static std::map<std::string, std::string> stats_fields(const memwatch::Stats& s) {
    auto n = [](auto v) { return std::to_string(v); };
    return {{"backend", s.backend}, {"backend_reason", s.backend_reason}, {"regions", n(s.regions)},
            {"protected_pages", n(s.protected_pages)}, {"faults", n(s.faults)}, {"events", n(s.events)},
            {"fallback_regions", n(s.fallback_regions)}, {"gone_regions", n(s.gone_regions)},
            {"shared_regions", n(s.shared_regions)}, {"reprotect_failures", n(s.reprotect_failures)},
            {"coalesced_events", n(s.coalesced_events)},
            {"dropped_wheres", n(s.dropped_wheres)}, {"native_bytes", n(s.native_bytes)},
            {"snapshot_bytes", n(s.snapshot_bytes)}, {"pending_events", n(s.pending_events)},
            {"callback_errors", n(s.callback_errors)}, {"latency_p50_ns", n(s.latency_p50_ns)},
            {"latency_p99_ns", n(s.latency_p99_ns)}, {"hot_pages", n(s.hot_pages)}};
  }

 private:
  std::mutex mu_;
  std::vector<memwatch::ChangeEvent> delivered_;
  std::shared_ptr<cJSON> sc_;
  std::string backend_;
};

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Registers one test per scenario file and backend. Returns how many.
int register_scenarios(const std::string& dir) {
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* de = readdir(d)) {
      std::string n = de->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) files.push_back(dir + "/" + n);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  int count = 0;
  for (const auto& path : files) {
    std::shared_ptr<cJSON> sc(cJSON_Parse(read_all(path).c_str()), cJSON_Delete);
    if (!sc) {
      testing::RegisterTest("behavior", ("unparsable_" + path).c_str(), nullptr, nullptr, __FILE__, __LINE__,
                            [path]() -> testing::Test* {
                              struct Bad : testing::Test {
                                std::string p;
                                explicit Bad(std::string x) : p(std::move(x)) {}
                                void TestBody() override { FAIL() << "cannot parse " << p; }
                              };
                              return new Bad(path);
                            });
      count++;
      continue;
    }
    std::string name = str_or(sc.get(), "name");
    const cJSON* be;
    cJSON_ArrayForEach(be, cJSON_GetObjectItemCaseSensitive(sc.get(), "backends")) {
      std::string backend = be->valuestring;
      testing::RegisterTest("behavior", (name + "/" + backend).c_str(), nullptr, nullptr, path.c_str(), 1,
                            [sc, backend]() -> testing::Test* { return new ScenarioTest(sc, backend); });
      count++;
    }
  }
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::string dir;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a.rfind("--behavior-dir=", 0) == 0) dir = a.substr(15);
  }
  if (dir.empty()) {
    fprintf(stderr, "usage: %s --behavior-dir=DIR\n", argv[0]);
    return 2;
  }
  if (register_scenarios(dir) == 0) {
    fprintf(stderr, "no scenarios in %s\n", dir.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
