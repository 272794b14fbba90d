// C++ side of the callback: called by Rust (through the cxx bridge, which
// catches std::exception), calls the user's std::function.
#include "memwatch/callback.h"

#include <exception>
#include <stdexcept>

#include "memwatch-cxx/src/lib.rs.h"

namespace memwatch {
namespace ffi {

void CallbackHolder::invoke(const FfiEvent &event) const {
  try {
    fn_(event);
  } catch (const std::exception &) {
    throw;  // caught by the bridge and counted as a callback error
  } catch (...) {
    // Not a std::exception: the bridge only catches those, so convert here.
    throw std::runtime_error("memwatch callback threw a non-std::exception value");
  }
}

}  // namespace ffi
}  // namespace memwatch
