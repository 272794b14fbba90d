// memwatch.hpp - C++17 API of memwatch, header-only over the C API (memwatch.h).
//
//   #include <memwatch.hpp>
//   memwatch::Watcher w;                       // backend "auto"
//   std::vector<uint8_t> data(100);
//   w.watch(data, "data");                     // any contiguous container
//   data[0] = 42;
//   for (const auto& e : w.check_changes()) std::cout << e.variable_name << "\n";
//
// Link libmemwatch (CMake: memwatch::cxx or memwatch::memwatch; pkg-config:
// memwatch-cxx or memwatch). C and C++ code in one program share its one
// engine.
//
// Errors are exceptions derived from memwatch::Error (itself a
// std::runtime_error) carrying the C API's error code. Callbacks run on the
// watcher's delivery thread, one at a time; an exception thrown by a callback
// is caught here (it never reaches the C API), counted in
// Stats::callback_errors, and delivery goes on.
#pragma once

#include <memwatch.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace memwatch {

/// Identifies a watched region: >= 1, unique for the life of the process.
using RegionId = std::uint32_t;

/// Error codes: the C API's memwatch_error_t.
enum class ErrorCode : int {
  InvalidArgument = MEMWATCH_ERR_INVALID_ARGUMENT,  ///< null/zero length/bad option
  Unmapped = MEMWATCH_ERR_UNMAPPED,                 ///< memory not (fully) mapped
  ReadOnly = MEMWATCH_ERR_READ_ONLY,                ///< memory not writable
  Overlap = MEMWATCH_ERR_OVERLAP,                   ///< overlaps a region of the same watcher
  Unsupported = MEMWATCH_ERR_UNSUPPORTED,           ///< backend not available here
  Closed = MEMWATCH_ERR_CLOSED,                     ///< watcher closed (or moved from)
  Os = MEMWATCH_ERR_OS,                             ///< a system call failed
  Internal = MEMWATCH_ERR_INTERNAL,                 ///< a bug in memwatch (caught panic)
  Database = MEMWATCH_ERR_DATABASE,                 ///< record_to: the database cannot be opened or reached
};

/// Base of every memwatch exception.
class Error : public std::runtime_error {
 public:
  /// An error with its code and message.
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  /// Which kind of failure.
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

/// Null address, zero length, bad option.
class InvalidArgument : public Error {
 public:
  /// See Error.
  explicit InvalidArgument(const std::string& m) : Error(ErrorCode::InvalidArgument, m) {}
};
/// Memory not (fully) mapped.
class Unmapped : public Error {
 public:
  /// See Error.
  explicit Unmapped(const std::string& m) : Error(ErrorCode::Unmapped, m) {}
};
/// Memory mapped but not writable.
class ReadOnly : public Error {
 public:
  /// See Error.
  explicit ReadOnly(const std::string& m) : Error(ErrorCode::ReadOnly, m) {}
};
/// Overlaps a region of the same watcher.
class Overlap : public Error {
 public:
  /// See Error.
  explicit Overlap(const std::string& m) : Error(ErrorCode::Overlap, m) {}
};
/// The backend cannot be used here.
class Unsupported : public Error {
 public:
  /// See Error.
  explicit Unsupported(const std::string& m) : Error(ErrorCode::Unsupported, m) {}
};
/// The watcher was closed or moved from.
class Closed : public Error {
 public:
  /// See Error.
  explicit Closed(const std::string& m) : Error(ErrorCode::Closed, m) {}
};
/// A system call failed.
class OsError : public Error {
 public:
  /// See Error.
  explicit OsError(const std::string& m) : Error(ErrorCode::Os, m) {}
};
/// A bug inside memwatch (a caught panic), or a code this header does not know.
class InternalError : public Error {
 public:
  /// See Error.
  explicit InternalError(const std::string& m) : Error(ErrorCode::Internal, m) {}
};
/// record_to: the database cannot be opened or reached.
class DatabaseError : public Error {
 public:
  /// See Error.
  explicit DatabaseError(const std::string& m) : Error(ErrorCode::Database, m) {}
};

namespace detail {

/// Throws the exception of a C API error code, with the thread's last message.
[[noreturn]] inline void throw_code(int code) {
  std::string msg = memwatch_last_error();
  switch (code) {
    case MEMWATCH_ERR_INVALID_ARGUMENT: throw InvalidArgument(msg);
    case MEMWATCH_ERR_UNMAPPED: throw Unmapped(msg);
    case MEMWATCH_ERR_READ_ONLY: throw ReadOnly(msg);
    case MEMWATCH_ERR_OVERLAP: throw Overlap(msg);
    case MEMWATCH_ERR_UNSUPPORTED: throw Unsupported(msg);
    case MEMWATCH_ERR_CLOSED: throw Closed(msg);
    case MEMWATCH_ERR_OS: throw OsError(msg);
    case MEMWATCH_ERR_DATABASE: throw DatabaseError(msg);
    default: throw InternalError("[" + std::to_string(code) + "] " + msg);
  }
}

/// Returns rc, or throws if it is an error (negative).
inline int check(int rc) {
  if (rc < 0) throw_code(rc);
  return rc;
}

/// The engine's default options, asked once.
inline const memwatch_options_t& defaults() {
  static const memwatch_options_t d = [] {
    memwatch_options_t o;
    memwatch_options_default(&o);
    return o;
  }();
  return d;
}

/// Contiguous containers with writable elements: std::vector, std::array, C arrays, std::string, ...
template <class C, class = void>
struct is_contiguous : std::false_type {};
template <class C>
struct is_contiguous<C, std::void_t<decltype(std::data(std::declval<C&>())), decltype(std::size(std::declval<C&>()))>>
    : std::bool_constant<std::is_pointer_v<decltype(std::data(std::declval<C&>()))> &&
                         !std::is_const_v<std::remove_pointer_t<decltype(std::data(std::declval<C&>()))>>> {};

/// A millisecond option as the C API's uint32_t; throws InvalidArgument if out of range.
inline std::uint32_t millis(std::chrono::milliseconds v, const char* what) {
  if (v.count() < 0 || v.count() > std::numeric_limits<std::uint32_t>::max())
    throw InvalidArgument(std::string(what) + " must be 0.." + std::to_string(std::numeric_limits<std::uint32_t>::max()) +
                          " ms, got " + std::to_string(v.count()));
  return static_cast<std::uint32_t>(v.count());
}

}  // namespace detail

/// Watcher settings; every default is the engine's (memwatch_options_default:
/// 5 ms window, 100 ms poll interval, 4096 max value bytes, 256 preview
/// bytes, 32768 ring entries, snapshots on). A zero or negative window or
/// interval is rejected with InvalidArgument when the watcher is made.
struct Options {
  /// "auto", "protect", "writewatch" or "poll".
  std::string backend = detail::defaults().backend;
  /// How long a written page stays writable before it is diffed (protect).
  std::chrono::milliseconds writable_window{detail::defaults().writable_window_ms};
  /// How often the poll backend hashes its regions.
  std::chrono::milliseconds poll_interval{detail::defaults().poll_interval_ms};
  /// Events carry whole old/new values for regions up to this size.
  std::size_t max_value_bytes = static_cast<std::size_t>(detail::defaults().max_value_bytes);
  /// Bytes of old/new preview in every event.
  std::size_t preview_bytes = static_cast<std::size_t>(detail::defaults().preview_bytes);
  /// Process-wide fault ring capacity (used when the engine starts).
  std::size_t ring_capacity = static_cast<std::size_t>(detail::defaults().ring_capacity);
  /// Keep snapshots: old values and exact changed ranges.
  bool snapshots = detail::defaults().snapshots != 0;
  /// Locate writers (backend "protect"/"auto"): file, function, line of each write.
  bool locate_writers = detail::defaults().locate_writers != 0;
  /// Frames captured per located write, 1..32.
  std::uint32_t stack_depth = detail::defaults().stack_depth;
};

/// A run of changed bytes, relative to the region start.
struct ByteRange {
  std::size_t offset = 0;  ///< first changed byte
  std::size_t length = 0;  ///< number of bytes
  /// Equal when both fields are.
  bool operator==(const ByteRange& o) const { return offset == o.offset && length == o.length; }
};

/// One change to one region (a copy of memwatch_change_event_t).
struct ChangeEvent {
  std::uint64_t seq = 0;           ///< process-wide, increasing
  std::uint64_t timestamp_ns = 0;  ///< CLOCK_MONOTONIC
  std::uint32_t adapter_id = 0;    ///< 7 for watchers made by this API
  RegionId region_id = 0;          ///< the region that changed
  std::string variable_name;       ///< name given to watch()
  std::optional<std::uint32_t> thread_id;  ///< writer's kernel tid (protect backend)
  std::optional<std::uint64_t> fault_ip;   ///< writer's instruction pointer (protect backend)
  std::string file;                ///< source file of the write ("" unless locate_writers)
  std::string function;            ///< function of the write ("" unless locate_writers)
  std::uint32_t line = 0;          ///< 0 = unknown
  std::size_t how_big = 0;         ///< region size in bytes
  std::vector<ByteRange> changed_ranges;  ///< ascending
  std::vector<std::uint8_t> old_preview;  ///< first preview_bytes before
  std::vector<std::uint8_t> new_preview;  ///< first preview_bytes after
  std::optional<std::vector<std::uint8_t>> old_value;  ///< whole old value (small regions, snapshots on)
  std::optional<std::vector<std::uint8_t>> new_value;  ///< whole new value (small regions)
  std::optional<std::string> storage_key_old;  ///< value store key of a large old value
  std::optional<std::string> storage_key_new;  ///< value store key of a large new value
  std::optional<std::string> metadata;         ///< as given to watch()
  std::uint32_t coalesced = 1;  ///< changes this event stands for (>1: merged in a full queue)
};

/// Counters of one watcher (faults, protected_pages, dropped_wheres are engine-wide).
struct Stats {
  std::string backend;         ///< "protect", "poll", ... ("none" before any region)
  std::string backend_reason;  ///< why a better backend was not used
  std::uint64_t regions = 0;          ///< regions this watcher watches
  std::uint64_t protected_pages = 0;  ///< pages kept write-protected (engine-wide)
  std::uint64_t faults = 0;           ///< write faults handled (engine-wide)
  std::uint64_t events = 0;           ///< events this watcher produced
  std::uint64_t fallback_regions = 0; ///< regions on another backend than the watcher's (reason in backend_reason)
  std::uint64_t gone_regions = 0;     ///< regions dropped: memory unmapped while watched (engine-wide)
  std::uint64_t shared_regions = 0;   ///< shared-mapping regions on protect/writewatch: other writers invisible
  std::uint64_t reprotect_failures = 0;  ///< protect pages that could not be re-armed (engine-wide; polled)
  std::uint64_t coalesced_events = 0;    ///< changes merged into a pending event (queue cap)
  std::uint64_t hot_pages = 0;           ///< pages written nonstop, left writable and polled (engine-wide)
  std::uint64_t dropped_wheres = 0;   ///< fault "wheres" lost to a full ring (engine-wide); changes never are
  std::uint64_t native_bytes = 0;     ///< native memory held for this watcher's regions
  std::uint64_t snapshot_bytes = 0;   ///< of which snapshots
  std::uint64_t pending_events = 0;   ///< events waiting for check_changes() or the callback
  std::uint64_t callback_errors = 0;  ///< callbacks that threw
  std::uint64_t latency_p50_ns = 0;   ///< median first-write-to-delivery latency
  std::uint64_t latency_p99_ns = 0;   ///< 99th percentile of the same
};

/// The callback type: called on the delivery thread for each change.
using Callback = std::function<void(const ChangeEvent&)>;

namespace detail {

inline std::vector<std::uint8_t> bytes(const std::uint8_t* p, std::size_t n) {
  return p ? std::vector<std::uint8_t>(p, p + n) : std::vector<std::uint8_t>{};
}

inline std::optional<std::string> opt_str(const char* s) {
  return s ? std::optional<std::string>(s) : std::nullopt;
}

/// Copies a C event into a ChangeEvent.
inline ChangeEvent convert(const memwatch_change_event_t& c) {
  ChangeEvent e;
  e.seq = c.seq;
  e.timestamp_ns = c.timestamp_ns;
  e.adapter_id = c.adapter_id;
  e.region_id = c.region_id;
  e.variable_name = c.variable_name ? c.variable_name : "";
  if (c.thread_id != 0) e.thread_id = c.thread_id;
  if (c.fault_ip != 0) e.fault_ip = c.fault_ip;
  e.file = c.file ? c.file : "";
  e.function = c.function ? c.function : "";
  e.line = c.line;
  e.how_big = c.how_big;
  e.changed_ranges.reserve(c.changed_range_count);
  for (std::size_t i = 0; i < c.changed_range_count; i++)
    e.changed_ranges.push_back(ByteRange{c.changed_ranges[i].offset, c.changed_ranges[i].length});
  e.old_preview = bytes(c.old_preview, c.old_preview_len);
  e.new_preview = bytes(c.new_preview, c.new_preview_len);
  if (c.old_value) e.old_value = bytes(c.old_value, c.old_value_len);
  if (c.new_value) e.new_value = bytes(c.new_value, c.new_value_len);
  e.storage_key_old = opt_str(c.storage_key_old);
  e.storage_key_new = opt_str(c.storage_key_new);
  e.metadata = opt_str(c.metadata);
  e.coalesced = c.coalesced;
  return e;
}

/// What a C callback's user_ctx points to: the std::function and the handle
/// (for counting exceptions). memwatch owns it once set, and deletes it
/// through the finalizer when it is last used.
struct CallbackBox {
  Callback fn;
  memwatch_watcher_t* watcher;
};

extern "C" inline void memwatch_cxx_trampoline(const memwatch_change_event_t* event, void* user_ctx) {
  auto* box = static_cast<CallbackBox*>(user_ctx);
  try {
    box->fn(convert(*event));
  } catch (...) {
    // Never unwinds into the C API: counted, and delivery goes on.
    memwatch_watcher_report_callback_error(box->watcher);
  }
}

extern "C" inline void memwatch_cxx_finalizer(void* user_ctx) { delete static_cast<CallbackBox*>(user_ctx); }

}  // namespace detail

/// The operating system's page size in bytes.
inline std::size_t page_size() { return memwatch_page_size(); }

/// How long exit hooks wait for pending changes to reach the callbacks (the
/// engine's EXIT_FLUSH_TIMEOUT; memwatch_shutdown() waits this long).
inline std::chrono::milliseconds exit_flush_timeout() {
  return std::chrono::milliseconds(memwatch_exit_flush_timeout_ms());
}

/// Counters of a Recorder. Every event produced while it records is in
/// exactly one of written, dropped, abandoned, queued.
struct RecorderStats {
  std::uint64_t written;     ///< events committed to the database
  std::uint64_t dropped;     ///< events the full queue could not take (rows in memwatch_losses)
  std::uint64_t abandoned;   ///< unwritten when the recorder closed with the database down
  std::uint64_t queued;      ///< waiting to be written
  std::uint64_t batches;     ///< transactions committed
  std::uint64_t reconnects;  ///< connections made again after a loss
  bool connected;            ///< connected now
  std::int64_t recording_id; ///< this recording in memwatch_recordings
};

/// A running recorder (Watcher::record_to): writes every event of its watcher
/// into SQLite or PostgreSQL from its own thread. Destroying or closing it
/// stops recording after writing what is queued. Move-only; a moved-from or
/// closed recorder throws Closed.
class Recorder {
 public:
  /// Takes over other's recording; other then throws Closed.
  Recorder(Recorder&& other) noexcept : r_(std::exchange(other.r_, nullptr)) {}
  /// Stops this recording (writing its queue), then takes over other's.
  Recorder& operator=(Recorder&& other) noexcept {
    if (this != &other) {
      close();
      r_ = std::exchange(other.r_, nullptr);
    }
    return *this;
  }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  /// Stops recording after writing what is queued.
  ~Recorder() { close(); }

  /// The counters now.
  RecorderStats stats() const {
    memwatch_recorder_stats_t s{};
    detail::check(memwatch_recorder_stats(get(), &s));
    return RecorderStats{s.written, s.dropped, s.abandoned, s.queued,
                         s.batches, s.reconnects, s.connected != 0, s.recording_id};
  }
  /// Waits up to `timeout` until every event queued before the call is
  /// written; false on timeout (the database is down).
  bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return detail::check(memwatch_recorder_flush(get(), detail::millis(timeout, "flush timeout"))) == 1;
  }
  /// Stops recording after writing what is queued. Idempotent.
  void close() noexcept { memwatch_recorder_free(std::exchange(r_, nullptr)); }

 private:
  friend class Watcher;
  explicit Recorder(memwatch_recorder_t* r) : r_(r) {}
  memwatch_recorder_t* get() const {
    if (!r_) throw Closed("recorder was closed or moved from");
    return r_;
  }
  memwatch_recorder_t* r_;
};

/// A watcher: its own regions, callback and pending events. Move-only; the
/// destructor closes and frees it (unwatching everything). All members may
/// be called from any thread; a moved-from watcher throws Closed.
class Watcher {
 public:
  /// A watcher with default options (backend "auto").
  Watcher() : Watcher(Options{}) {}

  /// A watcher with these options. Throws InvalidArgument or Unsupported.
  explicit Watcher(const Options& o) {
    memwatch_options_t c = detail::defaults();
    c.backend = o.backend.c_str();
    c.writable_window_ms = detail::millis(o.writable_window, "writable_window");
    c.poll_interval_ms = detail::millis(o.poll_interval, "poll_interval");
    c.max_value_bytes = o.max_value_bytes;
    c.preview_bytes = o.preview_bytes;
    c.ring_capacity = o.ring_capacity;
    c.snapshots = o.snapshots ? 1 : 0;
    c.adapter_id = MEMWATCH_ADAPTER_CPP;
    c.locate_writers = o.locate_writers ? 1 : 0;
    c.stack_depth = o.stack_depth;
    detail::check(memwatch_watcher_new(&c, &w_));
  }

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  /// Takes over other's regions and callback; other becomes closed.
  Watcher(Watcher&& other) noexcept : w_(std::exchange(other.w_, nullptr)), closed_(other.closed_.load()) {}
  /// Closes this watcher, then takes over other's.
  Watcher& operator=(Watcher&& other) noexcept {
    if (this != &other) {
      memwatch_watcher_free(w_);
      w_ = std::exchange(other.w_, nullptr);
      closed_.store(other.closed_.load());
    }
    return *this;
  }
  /// Closes and frees the watcher. May run inside the watcher's own callback.
  ~Watcher() { memwatch_watcher_free(w_); }

  /// Watches [addr, addr+len). The memory must stay mapped until unwatch(),
  /// close() or destruction. Throws InvalidArgument (null, zero length),
  /// Unmapped, ReadOnly, Overlap, Closed.
  RegionId watch(const void* addr, std::size_t len, std::string_view name,
                 std::optional<std::string_view> metadata = std::nullopt) {
    std::string n(name);
    std::optional<std::string> md(metadata);
    RegionId id = 0;
    detail::check(memwatch_watcher_watch(get(), addr, len, n.c_str(), md ? md->c_str() : nullptr, &id));
    return id;
  }

  /// Watches the elements of a contiguous container (std::vector, std::array,
  /// C array, ...): data() .. data()+size(). The container must not
  /// reallocate while watched (do not grow a watched vector).
  template <class C, std::enable_if_t<detail::is_contiguous<C>::value, int> = 0>
  RegionId watch(C& container, std::string_view name, std::optional<std::string_view> metadata = std::nullopt) {
    using T = std::remove_pointer_t<decltype(std::data(container))>;
    static_assert(std::is_trivially_copyable_v<T>, "memwatch watches raw bytes: elements must be trivially copyable");
    return watch(static_cast<const void*>(std::data(container)), std::size(container) * sizeof(T), name, metadata);
  }

  /// Stops watching a region: true if it was watched, false for an unknown id.
  bool unwatch(RegionId id) { return detail::check(memwatch_watcher_unwatch(get(), id)) == 1; }

  /// Sets the callback (an empty function clears it). It runs on the
  /// delivery thread; exceptions it throws are counted and swallowed. The
  /// function object is destroyed once it can no longer run: after it is
  /// replaced or cleared, or the watcher is closed.
  void set_callback(Callback cb) {
    memwatch_watcher_t* w = get();
    if (!cb) {
      detail::check(memwatch_watcher_set_callback(w, nullptr, nullptr));
      return;
    }
    auto* box = new detail::CallbackBox{std::move(cb), w};
    // memwatch owns box from here on, even if the call fails.
    detail::check(memwatch_watcher_set_callback_with_finalizer(w, detail::memwatch_cxx_trampoline, box,
                                                               detail::memwatch_cxx_finalizer));
  }

  /// Detects changes now. Every write made before the call is in the result
  /// or was already delivered; with a callback set the events go to it (this
  /// waits for delivery) and the result is empty.
  std::vector<ChangeEvent> check_changes() {
    memwatch_change_event_t* ev = nullptr;
    std::size_t n = 0;
    detail::check(memwatch_watcher_check_changes(get(), &ev, &n));
    struct Free {
      memwatch_change_event_t* ev;
      std::size_t n;
      ~Free() { memwatch_events_free(ev, n); }
    } guard{ev, n};
    std::vector<ChangeEvent> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; i++) out.push_back(detail::convert(ev[i]));
    return out;
  }

  /// Records every event of this watcher (callback or check_changes alike)
  /// into `url`: a file path or "sqlite:PATH" (SQLite, WAL mode) or
  /// "postgresql://user@host:port/db". Never blocks the watched program.
  /// Throws InvalidArgument for a URL that is neither, DatabaseError when the
  /// database cannot be opened or reached, Closed after close().
  Recorder record_to(std::string_view url) const {
    std::string u(url);
    memwatch_recorder_t* r = nullptr;
    detail::check(memwatch_record_to(get(), u.c_str(), &r));
    return Recorder(r);
  }

  /// Statistics of this watcher.
  Stats stats() const {
    memwatch_stats_t s{};
    detail::check(memwatch_watcher_get_stats(get(), &s));
    Stats out;
    out.backend = s.backend ? s.backend : "";
    out.backend_reason = s.backend_reason;
    out.regions = s.regions;
    out.protected_pages = s.protected_pages;
    out.faults = s.faults;
    out.events = s.events;
    out.fallback_regions = s.fallback_regions;
    out.gone_regions = s.gone_regions;
    out.shared_regions = s.shared_regions;
    out.reprotect_failures = s.reprotect_failures;
    out.coalesced_events = s.coalesced_events;
    out.hot_pages = s.hot_pages;
    out.dropped_wheres = s.dropped_wheres;
    out.native_bytes = s.native_bytes;
    out.snapshot_bytes = s.snapshot_bytes;
    out.pending_events = s.pending_events;
    out.callback_errors = s.callback_errors;
    out.latency_p50_ns = s.latency_p50_ns;
    out.latency_p99_ns = s.latency_p99_ns;
    return out;
  }

  /// Closes the watcher (unwatching everything, destroying its callback);
  /// later calls throw Closed. Idempotent.
  void close() {
    if (w_) detail::check(memwatch_watcher_close(w_));
    closed_.store(true);
  }

  /// Whether the watcher is closed (or moved from).
  bool is_closed() const { return !w_ || closed_.load(); }

  /// The C handle, for calls this header does not wrap (the watcher keeps
  /// owning it).
  memwatch_watcher_t* handle() const { return get(); }

 private:
  memwatch_watcher_t* get() const {
    if (!w_) throw Closed("watcher was moved from");
    return w_;
  }

  memwatch_watcher_t* w_ = nullptr;
  std::atomic<bool> closed_{false};
};

}  // namespace memwatch
