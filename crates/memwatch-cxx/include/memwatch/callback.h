// memwatch/callback.h - the C++ callable the Rust side of the cxx bridge
// invokes for each change event. Internal to the C++ API: use memwatch.hpp.
#pragma once

#include <functional>
#include <memory>

namespace memwatch {
namespace ffi {

struct FfiEvent;

/// Holds the C++ callback of one watcher. Immutable after construction; the
/// delivery thread calls invoke() for one event at a time.
class CallbackHolder {
 public:
  /// Wraps fn (which may throw; see invoke()).
  explicit CallbackHolder(std::function<void(const FfiEvent &)> fn) : fn_(std::move(fn)) {}

  /// Calls the callback. Any exception it throws leaves as a
  /// std::exception, which the cxx bridge catches before it can reach Rust.
  void invoke(const FfiEvent &event) const;

 private:
  std::function<void(const FfiEvent &)> fn_;
};

}  // namespace ffi
}  // namespace memwatch
