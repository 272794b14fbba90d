// memwatch.hpp - C++17 API of memwatch: detect and report changes to watched memory.
//
//   #include <memwatch.hpp>
//   memwatch::Watcher w;                       // backend "auto"
//   std::vector<uint8_t> data(100);
//   w.watch(data, "data");                     // any contiguous container
//   data[0] = 42;
//   for (const auto& e : w.check_changes()) std::cout << e.variable_name << "\n";
//
// Link libmemwatch_cxx.a (CMake: memwatch::cxx; pkg-config: memwatch-cxx).
// It contains the whole engine: do not also link libmemwatch in the same
// program (there would be two engines and two copies of the Rust runtime).
//
// Errors are exceptions derived from memwatch::Error (itself a
// std::runtime_error). Callbacks run on the watcher's delivery thread, one at
// a time; an exception thrown by a callback is caught at the bridge (it never
// unwinds through Rust), counted in Stats::callback_errors, and delivery goes
// on.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "rust/cxx.h"
#include "memwatch/bridge/lib.rs.h"

namespace memwatch {

/// Identifies a watched region: >= 1, unique for the life of the process.
using RegionId = std::uint32_t;

/// Error codes, the same numbers as the C ABI's memwatch_error_t.
enum class ErrorCode : int {
  InvalidArgument = -1,  ///< null/zero length/bad option
  Unmapped = -2,         ///< memory not (fully) mapped
  ReadOnly = -3,         ///< memory not writable
  Overlap = -4,          ///< overlaps a region of the same watcher
  Unsupported = -5,      ///< backend not available here
  Closed = -6,           ///< watcher closed (or moved from)
  Os = -7,               ///< a system call failed
  Internal = -8,         ///< a bug in memwatch (caught panic)
  Database = -9,         ///< record_to: the database cannot be opened or reached
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
/// A bug inside memwatch (a caught panic).
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
/// The engine's default options, asked once.
inline const ffi::FfiOptions& defaults() {
  static const ffi::FfiOptions d = ffi::default_options();
  return d;
}
}  // namespace detail

/// Watcher settings; every default is the engine's (5 ms window, 100 ms poll
/// interval, 4096 max value bytes, 256 preview bytes, 32768 ring entries,
/// snapshots on). A zero or negative window or interval is rejected with
/// InvalidArgument when the watcher is made.
struct Options {
  /// "auto", "protect", "writewatch" or "poll".
  std::string backend = std::string(detail::defaults().backend);
  /// How long a written page stays writable before it is diffed (protect).
  std::chrono::milliseconds writable_window{static_cast<std::int64_t>(detail::defaults().writable_window_ms)};
  /// How often the poll backend hashes its regions.
  std::chrono::milliseconds poll_interval{static_cast<std::int64_t>(detail::defaults().poll_interval_ms)};
  /// Events carry whole old/new values for regions up to this size.
  std::size_t max_value_bytes = detail::defaults().max_value_bytes;
  /// Bytes of old/new preview in every event.
  std::size_t preview_bytes = detail::defaults().preview_bytes;
  /// Process-wide fault ring capacity (used when the engine starts).
  std::size_t ring_capacity = detail::defaults().ring_capacity;
  /// Keep snapshots: old values and exact changed ranges.
  bool snapshots = detail::defaults().snapshots;
};

/// A run of changed bytes, relative to the region start.
struct ByteRange {
  std::size_t offset = 0;  ///< first changed byte
  std::size_t length = 0;  ///< number of bytes
  /// Equal when both fields are.
  bool operator==(const ByteRange& o) const { return offset == o.offset && length == o.length; }
};

/// One change to one region.
struct ChangeEvent {
  std::uint64_t seq = 0;           ///< process-wide, increasing
  std::uint64_t timestamp_ns = 0;  ///< CLOCK_MONOTONIC
  std::uint32_t adapter_id = 0;    ///< 7 for watchers made by this API
  RegionId region_id = 0;          ///< the region that changed
  std::string variable_name;       ///< name given to watch()
  std::optional<std::uint32_t> thread_id;  ///< writer's kernel tid (protect backend)
  std::optional<std::uint64_t> fault_ip;   ///< writer's instruction pointer (protect backend)
  std::string file;                ///< "" until symbolization lands
  std::string function;            ///< "" until symbolization lands
  std::uint32_t line = 0;          ///< 0 = unknown
  std::size_t how_big = 0;         ///< region size in bytes
  std::vector<ByteRange> changed_ranges;  ///< ascending
  std::vector<std::uint8_t> old_preview;  ///< first preview_bytes before
  std::vector<std::uint8_t> new_preview;  ///< first preview_bytes after
  std::optional<std::vector<std::uint8_t>> old_value;  ///< whole old value (small regions, snapshots on)
  std::optional<std::vector<std::uint8_t>> new_value;  ///< whole new value (small regions)
  std::optional<std::string> storage_key_old;  ///< reserved (store key of a large old value)
  std::optional<std::string> storage_key_new;  ///< reserved (store key of a large new value)
  std::optional<std::string> metadata;         ///< as given to watch()
  std::uint32_t coalesced = 1;  ///< changes this event stands for (>1: merged in a full queue)
};

/// Counters of one watcher (faults, protected_pages, dropped_wheres are engine-wide).
struct Stats {
  std::string backend;         ///< "protect", "poll", ... ("none" before any region)
  std::string backend_reason;  ///< why a better backend was not used
  std::size_t regions = 0;          ///< regions this watcher watches
  std::size_t protected_pages = 0;  ///< pages kept write-protected (engine-wide)
  std::uint64_t faults = 0;         ///< write faults handled (engine-wide)
  std::uint64_t events = 0;         ///< events this watcher produced
  std::size_t fallback_regions = 0;  ///< regions on another backend than the watcher's (reason in backend_reason)
  std::uint64_t gone_regions = 0;    ///< regions dropped: memory unmapped while watched (engine-wide)
  std::size_t shared_regions = 0;    ///< shared-mapping regions on protect/writewatch: other writers invisible
  std::uint64_t reprotect_failures = 0;  ///< protect pages that could not be re-armed (engine-wide; polled)
  std::uint64_t coalesced_events = 0;    ///< changes merged into a pending event (queue cap)
  std::uint64_t dropped_wheres = 0; ///< fault "wheres" lost to a full ring (engine-wide); changes never are
  std::size_t native_bytes = 0;     ///< native memory held for this watcher's regions
  std::size_t snapshot_bytes = 0;   ///< of which snapshots
  std::size_t pending_events = 0;   ///< events waiting for check_changes() or the callback
  std::uint64_t callback_errors = 0;  ///< callbacks that threw
  std::uint64_t latency_p50_ns = 0;   ///< median first-write-to-delivery latency
  std::uint64_t latency_p99_ns = 0;   ///< 99th percentile of the same
};

/// The callback type: called on the delivery thread for each change.
using Callback = std::function<void(const ChangeEvent&)>;

namespace detail {

[[noreturn]] inline void rethrow(const rust::Error& e) {
  // Messages cross the bridge as "[code] text".
  std::string what = e.what();
  int code = static_cast<int>(ErrorCode::Internal);
  std::string msg = what;
  if (what.size() > 3 && what[0] == '[') {
    auto end = what.find(']');
    if (end != std::string::npos) {
      try {
        code = std::stoi(what.substr(1, end - 1));
      } catch (...) {
      }
      msg = what.substr(end + 1 < what.size() && what[end + 1] == ' ' ? end + 2 : end + 1);
    }
  }
  switch (static_cast<ErrorCode>(code)) {
    case ErrorCode::InvalidArgument: throw InvalidArgument(msg);
    case ErrorCode::Unmapped: throw Unmapped(msg);
    case ErrorCode::ReadOnly: throw ReadOnly(msg);
    case ErrorCode::Overlap: throw Overlap(msg);
    case ErrorCode::Unsupported: throw Unsupported(msg);
    case ErrorCode::Closed: throw Closed(msg);
    case ErrorCode::Os: throw OsError(msg);
    case ErrorCode::Database: throw DatabaseError(msg);
    default: throw InternalError(msg);
  }
}

template <class F>
auto call(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const rust::Error& e) {
    rethrow(e);
  }
}

inline std::vector<std::uint8_t> bytes(const rust::Vec<std::uint8_t>& v) { return {v.begin(), v.end()}; }

inline ChangeEvent convert(const ffi::FfiEvent& f) {
  ChangeEvent e;
  e.seq = f.seq;
  e.timestamp_ns = f.timestamp_ns;
  e.adapter_id = f.adapter_id;
  e.region_id = f.region_id;
  e.variable_name = std::string(f.variable_name);
  if (f.has_thread_id) e.thread_id = f.thread_id;
  if (f.has_fault_ip) e.fault_ip = f.fault_ip;
  e.file = std::string(f.file);
  e.function = std::string(f.function);
  e.line = f.line;
  e.how_big = f.how_big;
  e.changed_ranges.reserve(f.changed_ranges.size());
  for (const auto& r : f.changed_ranges) e.changed_ranges.push_back(ByteRange{r.offset, r.length});
  e.old_preview = bytes(f.old_preview);
  e.new_preview = bytes(f.new_preview);
  if (f.has_old_value) e.old_value = bytes(f.old_value);
  if (f.has_new_value) e.new_value = bytes(f.new_value);
  if (f.has_storage_key_old) e.storage_key_old = std::string(f.storage_key_old);
  if (f.has_storage_key_new) e.storage_key_new = std::string(f.storage_key_new);
  if (f.has_metadata) e.metadata = std::string(f.metadata);
  e.coalesced = f.coalesced;
  return e;
}

inline rust::Str str(std::string_view s) { return rust::Str(s.data(), s.size()); }

/// Contiguous containers with writable elements: std::vector, std::array, C arrays, std::string, ...
template <class C, class = void>
struct is_contiguous : std::false_type {};
template <class C>
struct is_contiguous<C, std::void_t<decltype(std::data(std::declval<C&>())), decltype(std::size(std::declval<C&>()))>>
    : std::bool_constant<std::is_pointer_v<decltype(std::data(std::declval<C&>()))> &&
                         !std::is_const_v<std::remove_pointer_t<decltype(std::data(std::declval<C&>()))>>> {};

}  // namespace detail

/// The operating system's page size in bytes.
inline std::size_t page_size() { return ffi::page_size(); }

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
/// into SQLite or PostgreSQL from its own thread. Destroying it stops
/// recording after writing what is queued. Move-only; a moved-from recorder
/// throws Closed.
class Recorder {
 public:
  /// Takes over other's recording; other then throws Closed.
  Recorder(Recorder&& other) noexcept : impl_(std::move(other.impl_)) { other.impl_.reset(); }
  /// Stops this recording (writing its queue), then takes over other's.
  Recorder& operator=(Recorder&& other) noexcept {
    if (this != &other) {
      impl_.reset();
      impl_ = std::move(other.impl_);
      other.impl_.reset();
    }
    return *this;
  }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  ~Recorder() = default;

  /// The counters now.
  RecorderStats stats() const {
    auto s = get().recorder_stats();
    return RecorderStats{s.written, s.dropped, s.abandoned, s.queued,
                         s.batches, s.reconnects, s.connected, s.recording_id};
  }
  /// Waits up to `timeout` until every event queued before the call is
  /// written; false on timeout (the database is down).
  bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    if (timeout.count() < 0) throw InvalidArgument("flush timeout must not be negative");
    return get().recorder_flush(static_cast<std::uint64_t>(timeout.count()));
  }
  /// Stops recording after writing what is queued. Idempotent.
  void close() {
    if (impl_) (*impl_)->recorder_close();
  }

 private:
  friend class Watcher;
  explicit Recorder(rust::Box<ffi::RustRecorder> r) : impl_(std::move(r)) {}
  const ffi::RustRecorder& get() const {
    if (!impl_) throw Closed("recorder was moved from");
    return **impl_;
  }
  std::optional<rust::Box<ffi::RustRecorder>> impl_;
};

/// A watcher: its own regions, callback and pending events. Move-only; the
/// destructor closes it (unwatching everything). All members may be called
/// from any thread; a moved-from watcher throws Closed.
class Watcher {
 public:
  /// A watcher with default options (backend "auto").
  Watcher() : Watcher(Options{}) {}

  /// A watcher with these options. Throws InvalidArgument or Unsupported.
  explicit Watcher(const Options& o) {
    ffi::FfiOptions f{rust::String(o.backend),
                      static_cast<std::uint64_t>(o.writable_window.count() < 0 ? 0 : o.writable_window.count()),
                      static_cast<std::uint64_t>(o.poll_interval.count() < 0 ? 0 : o.poll_interval.count()),
                      o.max_value_bytes,
                      o.preview_bytes,
                      o.ring_capacity,
                      o.snapshots};
    impl_.emplace(detail::call([&] { return ffi::new_watcher(f); }));
  }

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  /// Takes over other's regions and callback; other becomes closed.
  Watcher(Watcher&& other) noexcept : impl_(std::move(other.impl_)) { other.impl_.reset(); }
  /// Closes this watcher, then takes over other's.
  Watcher& operator=(Watcher&& other) noexcept {
    if (this != &other) {
      impl_.reset();
      impl_ = std::move(other.impl_);
      other.impl_.reset();
    }
    return *this;
  }
  /// Closes the watcher. May run inside the watcher's own callback.
  ~Watcher() = default;

  /// Watches [addr, addr+len). The memory must stay mapped until unwatch(),
  /// close() or destruction. Throws InvalidArgument (null, zero length),
  /// Unmapped, ReadOnly, Overlap, Closed.
  RegionId watch(const void* addr, std::size_t len, std::string_view name,
                 std::optional<std::string_view> metadata = std::nullopt) {
    const auto& w = get();
    std::string_view md = metadata.value_or(std::string_view{});
    return detail::call([&] {
      return w.watch(static_cast<const std::uint8_t*>(addr), len, detail::str(name), metadata.has_value(),
                     detail::str(md));
    });
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
  bool unwatch(RegionId id) {
    const auto& w = get();
    return detail::call([&] { return w.unwatch(id); });
  }

  /// Sets the callback (an empty function clears it). It runs on the
  /// delivery thread; exceptions it throws are counted and swallowed.
  void set_callback(Callback cb) {
    const auto& w = get();
    if (!cb) {
      detail::call([&] { w.clear_callback(); });
      return;
    }
    auto holder = std::make_unique<ffi::CallbackHolder>(
        [cb = std::move(cb)](const ffi::FfiEvent& f) { cb(detail::convert(f)); });
    detail::call([&] { w.set_callback(std::move(holder)); });
  }

  /// Detects changes now. Every write made before the call is in the result
  /// or was already delivered; with a callback set the events go to it (this
  /// waits for delivery) and the result is empty.
  std::vector<ChangeEvent> check_changes() {
    const auto& w = get();
    auto v = detail::call([&] { return w.check_changes(); });
    std::vector<ChangeEvent> out;
    out.reserve(v.size());
    for (const auto& f : v) out.push_back(detail::convert(f));
    return out;
  }

  /// Records every event of this watcher (callback or check_changes alike)
  /// into `url`: a file path or "sqlite:PATH" (SQLite, WAL mode) or
  /// "postgresql://user@host:port/db". Never blocks the watched program.
  /// Throws InvalidArgument for a URL that is neither, DatabaseError when the
  /// database cannot be opened or reached, Closed after close().
  Recorder record_to(std::string_view url) const {
    return detail::call([&] { return Recorder(get().record_to(detail::str(url))); });
  }

  /// Statistics of this watcher.
  Stats stats() const {
    auto s = get().stats();
    Stats out;
    out.backend = std::string(s.backend);
    out.backend_reason = std::string(s.backend_reason);
    out.regions = s.regions;
    out.protected_pages = s.protected_pages;
    out.faults = s.faults;
    out.events = s.events;
    out.fallback_regions = s.fallback_regions;
    out.gone_regions = s.gone_regions;
    out.shared_regions = s.shared_regions;
    out.reprotect_failures = s.reprotect_failures;
    out.coalesced_events = s.coalesced_events;
    out.dropped_wheres = s.dropped_wheres;
    out.native_bytes = s.native_bytes;
    out.snapshot_bytes = s.snapshot_bytes;
    out.pending_events = s.pending_events;
    out.callback_errors = s.callback_errors;
    out.latency_p50_ns = s.latency_p50_ns;
    out.latency_p99_ns = s.latency_p99_ns;
    return out;
  }

  /// Closes the watcher (unwatching everything); later calls throw Closed. Idempotent.
  void close() {
    if (impl_) (*impl_)->close();
  }

  /// Whether the watcher is closed (or moved from).
  bool is_closed() const { return !impl_ || (*impl_)->is_closed(); }

 private:
  const ffi::RustWatcher& get() const {
    if (!impl_) throw Closed("watcher was moved from");
    return **impl_;
  }

  std::optional<rust::Box<ffi::RustWatcher>> impl_;
};

}  // namespace memwatch
