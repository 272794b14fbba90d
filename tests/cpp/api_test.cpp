// GoogleTest tests of the C++ API (memwatch.hpp, header-only over memwatch.h):
// events, the container overload, exceptions, move semantics, callbacks
// (including throwing ones, which must not unwind into the C API, and the
// lifetime of the callback object), one engine shared with C code, and a
// program's own SIGSEGV handler.
#include <gtest/gtest.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memwatch.hpp>
#include <mutex>
#include <thread>
#include <vector>

namespace {

std::size_t page() { return memwatch::page_size(); }

uint32_t tid() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

struct Pages {
  explicit Pages(std::size_t n, int prot = PROT_READ | PROT_WRITE) : len(n * page()) {
    void* m = mmap(nullptr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("mmap");
    p = static_cast<uint8_t*>(m);
  }
  ~Pages() { munmap(p, len); }
  uint8_t* p;
  std::size_t len;
};

void poke(uint8_t* p, uint8_t v) { *reinterpret_cast<volatile uint8_t*>(p) = v; }

memwatch::Options with_backend(const char* b) {
  memwatch::Options o;
  o.backend = b;
  return o;
}

class Backends : public testing::TestWithParam<const char*> {};

TEST_P(Backends, OneByteChangedExactEvent) {
  memwatch::Watcher w(with_backend(GetParam()));
  Pages mem(1);
  auto id = w.watch(mem.p, 64, "counter", "unit=bytes");
  EXPECT_GE(id, 1u);
  poke(mem.p + 3, 0x2a);
  auto ev = w.check_changes();
  ASSERT_EQ(ev.size(), 1u);
  const auto& e = ev[0];
  EXPECT_EQ(e.region_id, id);
  EXPECT_EQ(e.variable_name, "counter");
  EXPECT_EQ(e.metadata, std::optional<std::string>("unit=bytes"));
  EXPECT_EQ(e.adapter_id, 7u);
  EXPECT_EQ(e.how_big, 64u);
  EXPECT_TRUE((e.changed_ranges == std::vector<memwatch::ByteRange>{{3, 1}}));
  std::vector<uint8_t> before(64, 0), after(64, 0);
  after[3] = 0x2a;
  EXPECT_EQ(e.old_value, before);
  EXPECT_EQ(e.new_value, after);
  EXPECT_EQ(e.new_preview, after);
  EXPECT_FALSE(e.storage_key_old.has_value());
  if (std::string(GetParam()) == "protect") {
    EXPECT_EQ(e.thread_id, std::optional<uint32_t>(tid()));
    EXPECT_TRUE(e.fault_ip.has_value());
  } else {
    EXPECT_FALSE(e.thread_id.has_value());
    EXPECT_FALSE(e.fault_ip.has_value());
  }
  EXPECT_TRUE(w.check_changes().empty());
  EXPECT_EQ(w.stats().backend, GetParam());
  EXPECT_EQ(w.stats().events, 1u);
}

TEST_P(Backends, ContainerOverloads) {
  memwatch::Watcher w(with_backend(GetParam()));
  std::vector<uint64_t> v(4, 0);
  std::array<uint16_t, 8> a{};
  static int32_t c[5];
  std::fill(std::begin(c), std::end(c), 0);  // shared by the parameterized runs
  auto iv = w.watch(v, "vec");
  auto ia = w.watch(a, "arr");
  auto ic = w.watch(c, "carr", "c array");
  v[1] = 0x0102030405060708ull;
  a[7] = 0xffff;
  c[0] = -1;
  auto ev = w.check_changes();
  ASSERT_EQ(ev.size(), 3u);
  for (const auto& e : ev) {
    if (e.region_id == iv) {
      EXPECT_EQ(e.how_big, 32u);
      EXPECT_TRUE((e.changed_ranges == std::vector<memwatch::ByteRange>{{8, 8}}));
    } else if (e.region_id == ia) {
      EXPECT_EQ(e.how_big, 16u);
      EXPECT_TRUE((e.changed_ranges == std::vector<memwatch::ByteRange>{{14, 2}}));
    } else {
      EXPECT_EQ(e.region_id, ic);
      EXPECT_EQ(e.how_big, 20u);
      EXPECT_EQ(e.metadata.value_or(""), "c array");
      EXPECT_TRUE((e.changed_ranges == std::vector<memwatch::ByteRange>{{0, 4}}));
    }
  }
  EXPECT_TRUE(w.unwatch(iv));
  EXPECT_FALSE(w.unwatch(iv));
  EXPECT_FALSE(w.unwatch(4000000000u));
  EXPECT_TRUE(w.unwatch(ia));
  EXPECT_TRUE(w.unwatch(ic));
}

TEST_P(Backends, BadInputThrowsTypedExceptions) {
  memwatch::Watcher w(with_backend(GetParam()));
  Pages mem(1);
  EXPECT_THROW(w.watch(mem.p, 0, "zero"), memwatch::InvalidArgument);
  EXPECT_THROW(w.watch(nullptr, 8, "null"), memwatch::InvalidArgument);
  std::vector<uint8_t> empty;
  EXPECT_THROW(w.watch(empty, "empty"), memwatch::InvalidArgument);
  {
    void* gone = mmap(nullptr, page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(gone, page());
    EXPECT_THROW(w.watch(gone, 8, "unmapped"), memwatch::Unmapped);
  }
  Pages ro(1, PROT_READ);
  EXPECT_THROW(w.watch(ro.p, 8, "ro"), memwatch::ReadOnly);
  w.watch(mem.p, 16, "a");
  EXPECT_THROW(w.watch(mem.p + 8, 16, "b"), memwatch::Overlap);
  try {
    w.watch(mem.p + 8, 16, "b");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {  // every memwatch error is a std::runtime_error
    EXPECT_NE(std::string(e.what()).find("overlap"), std::string::npos) << e.what();
    EXPECT_EQ(dynamic_cast<const memwatch::Error&>(e).code(), memwatch::ErrorCode::Overlap);
  }
  w.close();
  EXPECT_TRUE(w.is_closed());
  EXPECT_THROW(w.watch(mem.p + 100, 4, "late"), memwatch::Closed);
  EXPECT_THROW(w.check_changes(), memwatch::Closed);
  EXPECT_THROW(w.unwatch(1), memwatch::Closed);
  w.close();  // idempotent
}

INSTANTIATE_TEST_SUITE_P(Cpp, Backends, testing::Values("protect", "writewatch", "poll"));

TEST(Options, BadOptionsThrow) {
  EXPECT_THROW(memwatch::Watcher(with_backend("magic")), memwatch::InvalidArgument);
  memwatch::Options o;
  o.poll_interval = std::chrono::milliseconds(0);
  EXPECT_THROW(memwatch::Watcher{o}, memwatch::InvalidArgument);
  memwatch::Options negative_window;
  negative_window.writable_window = std::chrono::milliseconds(-1);
  EXPECT_THROW(memwatch::Watcher{negative_window}, memwatch::InvalidArgument);
  memwatch::Options negative_poll;
  negative_poll.poll_interval = std::chrono::milliseconds(-100);
  EXPECT_THROW(memwatch::Watcher{negative_poll}, memwatch::InvalidArgument);
  memwatch::Options zero_ring;
  zero_ring.ring_capacity = 0;
  EXPECT_THROW(memwatch::Watcher{zero_ring}, memwatch::InvalidArgument);
  try {
    memwatch::Watcher w(with_backend("writewatch"));
  } catch (const memwatch::Unsupported& e) {
    EXPECT_GT(std::strlen(e.what()), 0u);
  }
}

TEST(Options, DefaultsAreTheEngines) {
  memwatch::Options o;
  EXPECT_EQ(o.backend, "auto");
  EXPECT_EQ(o.writable_window, std::chrono::milliseconds(5));
  EXPECT_EQ(o.poll_interval, std::chrono::milliseconds(100));
  EXPECT_EQ(o.max_value_bytes, 4096u);
  EXPECT_EQ(o.preview_bytes, 256u);
  EXPECT_EQ(o.ring_capacity, 32768u);
  EXPECT_TRUE(o.snapshots);
}

TEST(Move, MovedWatcherKeepsRegionsAndOldOneIsClosed) {
  Pages mem(1);
  memwatch::Watcher a(with_backend("protect"));
  auto id = a.watch(mem.p, 8, "m");
  memwatch::Watcher b(std::move(a));
  EXPECT_TRUE(a.is_closed());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_THROW(a.check_changes(), memwatch::Closed);
  poke(mem.p, 1);
  auto ev = b.check_changes();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].region_id, id);
  memwatch::Watcher c(with_backend("poll"));
  c = std::move(b);
  poke(mem.p, 2);
  ASSERT_EQ(c.check_changes().size(), 1u);
  static_assert(!std::is_copy_constructible_v<memwatch::Watcher>);
  static_assert(std::is_nothrow_move_constructible_v<memwatch::Watcher>);
}

struct Recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<memwatch::ChangeEvent> events;
  std::vector<uint32_t> threads;
};

TEST(Callback, DeliversOnTheDeliveryThread) {
  Pages mem(1);
  memwatch::Watcher w(with_backend("protect"));
  auto id = w.watch(mem.p, 32, "cb");
  Recorder r;
  w.set_callback([&](const memwatch::ChangeEvent& e) {
    std::lock_guard<std::mutex> g(r.mu);
    r.events.push_back(e);
    r.threads.push_back(tid());
  });
  poke(mem.p + 9, 0x99);
  EXPECT_TRUE(w.check_changes().empty());  // delivered to the callback, waited for
  {
    std::lock_guard<std::mutex> g(r.mu);
    ASSERT_EQ(r.events.size(), 1u);
    EXPECT_EQ(r.events[0].region_id, id);
    EXPECT_EQ(r.events[0].new_value.value().at(9), 0x99);
    EXPECT_NE(r.threads[0], tid());
  }
  w.set_callback(nullptr);  // cleared: back to check_changes
  poke(mem.p + 10, 1);
  ASSERT_EQ(w.check_changes().size(), 1u);
  EXPECT_EQ(r.events.size(), 1u);
}

// A callback that throws: the exception is caught in memwatch.hpp's
// trampoline (it never unwinds into the C API), counted, and the watcher
// keeps working.
TEST(Callback, ThrowingCallbackDoesNotUnwindThroughRustAndWatcherKeepsWorking) {
  for (const char* backend : {"protect", "writewatch", "poll"}) {
    SCOPED_TRACE(backend);
    Pages mem(1);
    memwatch::Watcher w(with_backend(backend));
    auto id = w.watch(mem.p, 16, "boom");
    std::atomic<int> calls{0};
    std::vector<uint8_t> last;
    std::mutex mu;
    w.set_callback([&](const memwatch::ChangeEvent& e) {
      int n = ++calls;
      {
        std::lock_guard<std::mutex> g(mu);
        last = e.new_value.value();
      }
      if (n == 1) throw std::runtime_error("callback failed");
      if (n == 2) throw 42;  // not a std::exception
    });
    poke(mem.p + 1, 1);
    EXPECT_TRUE(w.check_changes().empty());
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(w.stats().callback_errors, 1u);
    poke(mem.p + 2, 2);
    EXPECT_TRUE(w.check_changes().empty());
    EXPECT_EQ(calls.load(), 2);
    EXPECT_EQ(w.stats().callback_errors, 2u);
    poke(mem.p + 3, 3);
    EXPECT_TRUE(w.check_changes().empty());
    EXPECT_EQ(calls.load(), 3);
    EXPECT_EQ(w.stats().callback_errors, 2u);
    {
      std::lock_guard<std::mutex> g(mu);
      std::vector<uint8_t> want(16, 0);
      want[1] = 1;
      want[2] = 2;
      want[3] = 3;
      EXPECT_EQ(last, want);
    }
    // Without the callback, events still arrive.
    w.set_callback({});
    poke(mem.p + 4, 4);
    auto ev = w.check_changes();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].region_id, id);
    EXPECT_TRUE((ev[0].changed_ranges == std::vector<memwatch::ByteRange>{{4, 1}}));
  }
}

// The std::function (and what it captured) is destroyed exactly when the C
// API's finalizer says memwatch is done with it: replaced, cleared, closed.
TEST(Callback, CallbackObjectIsDestroyedWhenReplacedClearedOrClosed) {
  Pages mem(1);
  memwatch::Watcher w(with_backend("protect"));
  w.watch(mem.p, 16, "life");
  auto first = std::make_shared<int>(1);
  auto second = std::make_shared<int>(2);
  auto third = std::make_shared<int>(3);
  std::atomic<int> calls{0};
  w.set_callback([first, &calls](const memwatch::ChangeEvent&) { calls += *first; });
  EXPECT_EQ(first.use_count(), 2);
  poke(mem.p, 1);
  EXPECT_TRUE(w.check_changes().empty());
  EXPECT_EQ(calls.load(), 1);
  w.set_callback([second, &calls](const memwatch::ChangeEvent&) { calls += *second; });
  EXPECT_EQ(first.use_count(), 1);  // replaced: destroyed
  EXPECT_EQ(second.use_count(), 2);
  poke(mem.p, 2);
  EXPECT_TRUE(w.check_changes().empty());
  EXPECT_EQ(calls.load(), 3);
  w.set_callback(nullptr);
  EXPECT_EQ(second.use_count(), 1);  // cleared: destroyed
  w.set_callback([third](const memwatch::ChangeEvent&) {});
  EXPECT_EQ(third.use_count(), 2);
  w.close();
  EXPECT_EQ(third.use_count(), 1);  // closed: destroyed
  auto late = std::make_shared<int>(4);
  EXPECT_THROW(w.set_callback([late](const memwatch::ChangeEvent&) {}), memwatch::Closed);
  EXPECT_EQ(late.use_count(), 1);  // refused: destroyed, not leaked
}

// memwatch.hpp is a header over libmemwatch: C and C++ code in one program
// use one engine (a C watcher's write faults show in a C++ watcher's
// engine-wide counter), and the C handle is reachable.
TEST(Engine, CAndCppShareOneEngine) {
  Pages a(1), b(1);
  memwatch::Watcher cpp(with_backend("protect"));
  cpp.watch(a.p, 8, "cpp");
  memwatch_options_t o;
  memwatch_options_default(&o);
  o.backend = "protect";
  memwatch_watcher_t* c = nullptr;
  ASSERT_EQ(memwatch_watcher_new(&o, &c), MEMWATCH_OK);
  uint32_t id = 0;
  ASSERT_EQ(memwatch_watcher_watch(c, b.p, 8, "c", nullptr, &id), MEMWATCH_OK);
  auto before = cpp.stats().faults;
  poke(b.p, 7);  // a page only the C watcher watches
  memwatch_change_event_t* ev = nullptr;
  std::size_t n = 0;
  ASSERT_EQ(memwatch_watcher_check_changes(c, &ev, &n), MEMWATCH_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(ev[0].region_id, id);
  memwatch_events_free(ev, n);
  EXPECT_EQ(cpp.stats().faults, before + 1);
  EXPECT_TRUE(cpp.check_changes().empty());
  memwatch_stats_t s;
  ASSERT_EQ(memwatch_watcher_get_stats(cpp.handle(), &s), MEMWATCH_OK);
  EXPECT_EQ(s.regions, 1u);
  memwatch_watcher_free(c);
}

// The callback destroys its own watcher; delivery is driven by the engine
// (writable window), the test waits on a condition variable with a deadline.
TEST(Callback, WatcherDestroyedInsideItsCallback) {
  Pages mem(1);
  auto w = std::make_unique<memwatch::Watcher>(with_backend("protect"));
  w->watch(mem.p, 8, "self");
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  w->set_callback([&](const memwatch::ChangeEvent&) {
    w.reset();
    std::lock_guard<std::mutex> g(mu);
    done = true;
    cv.notify_all();
  });
  poke(mem.p, 1);
  std::unique_lock<std::mutex> g(mu);
  ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(5), [&] { return done; }));
  EXPECT_EQ(w, nullptr);
  poke(mem.p, 2);  // plain memory again
}

// A SIGSEGV handler the program installed before memwatch still gets its own
// faults while a buffer is watched with backend "protect".
sigjmp_buf g_jmp;
volatile sig_atomic_t g_faults = 0;
extern "C" void own_handler(int, siginfo_t*, void*) {
  g_faults = g_faults + 1;
  siglongjmp(g_jmp, 1);
}

// The handler must be installed before memwatch's, i.e. in a process where
// the engine has not started yet. ctest runs every test in its own process;
// when the whole binary runs at once, the test re-runs itself in a fresh one.
void own_handler_body();

TEST(Signals, OwnSigsegvHandlerKeepsWorking) {
  if (getenv("MEMWATCH_FRESH_PROCESS")) {
    own_handler_body();
    return;
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("MEMWATCH_FRESH_PROCESS", "1", 1);
    execl("/proc/self/exe", "cpp_api_test", "--gtest_filter=Signals.OwnSigsegvHandlerKeepsWorking",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "fresh-process run timed out";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "fresh-process run failed, status " << status;
}

void own_handler_body() {
  struct sigaction sa {}, old {};
  sa.sa_sigaction = own_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGSEGV, &sa, &old), 0);
  {
    Pages mem(1), guard(1, PROT_NONE);
    memwatch::Watcher w(with_backend("protect"));
    auto id = w.watch(mem.p, 16, "watched");
    const int rounds = 1000;
    for (int i = 0; i < rounds; i++) {
      if (sigsetjmp(g_jmp, 1) == 0) {
        poke(guard.p + i % 16, 1);
        ADD_FAILURE() << "PROT_NONE write did not fault";
        break;
      }
      if (i == 400) poke(mem.p + 5, 0x55);
    }
    EXPECT_EQ(g_faults, rounds);
    auto ev = w.check_changes();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].region_id, id);
    EXPECT_TRUE((ev[0].changed_ranges == std::vector<memwatch::ByteRange>{{5, 1}}));
    EXPECT_EQ(ev[0].new_value.value().at(5), 0x55);
    EXPECT_EQ(ev[0].thread_id, std::optional<uint32_t>(tid()));
  }
  // memwatch's handler stays installed (it chains); restoring ours on top is
  // the program's business. Leave the process as we found it.
  sigaction(SIGSEGV, &old, nullptr);
}

}  // namespace

// record_to: events recorded into SQLite and read back by the sqlite3 shell.
static std::string sqlite3_rows(const std::string& db, const std::string& sql) {
  std::string cmd = "sqlite3 '" + db + "' \"" + sql + "\"";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  size_t n;
  while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  if (f) pclose(f);
  return out;
}

TEST(Record, SqliteRowsHaveExactBytes) {
  char dir[] = "/tmp/memwatch-cpp-record-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string db = std::string(dir) + "/events.db";
  memwatch::Options o;
  o.backend = "poll";
  memwatch::Watcher w(o);
  std::array<std::uint8_t, 4> buf{'a', 'b', 'c', 'd'};
  w.watch(buf.data(), buf.size(), "it's \"cpp\"", std::string("m'; --"));
  memwatch::Recorder rec = w.record_to(db);
  static_cast<volatile std::uint8_t&>(buf[2]) = 'Z';
  ASSERT_EQ(w.check_changes().size(), 1u);
  ASSERT_TRUE(rec.flush());
  auto s = rec.stats();
  EXPECT_EQ(s.written, 1u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(sqlite3_rows(db, "SELECT variable_name, hex(old_value), hex(new_value), changed_ranges, "
                             "metadata, adapter FROM memwatch_events"),
            "it's \"cpp\"|61626364|61625A64|[[2,1]]|m'; --|7\n");
  memwatch::Recorder moved = std::move(rec);
  EXPECT_THROW(rec.stats(), memwatch::Closed);
  moved.close();
  moved.close();
  EXPECT_EQ(std::system((std::string("rm -rf '") + dir + "'").c_str()), 0);
}

TEST(Record, BadUrlsAndUnreachableDatabasesThrow) {
  memwatch::Options o;
  o.backend = "poll";
  memwatch::Watcher w(o);
  EXPECT_THROW(w.record_to("mysql://localhost/x"), memwatch::InvalidArgument);
  EXPECT_THROW(w.record_to(""), memwatch::InvalidArgument);
  EXPECT_THROW(w.record_to("/nonexistent-memwatch-dir/x/events.db"), memwatch::DatabaseError);
  EXPECT_THROW(w.record_to("postgresql://memwatch@127.0.0.1:1/memwatch"), memwatch::DatabaseError);
  w.close();
  EXPECT_THROW(w.record_to("late.db"), memwatch::Closed);
}
