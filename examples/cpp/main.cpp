// memwatch C++ example: watch a std::vector, change one element, print the event.
//
// Build against an installed memwatch:
//   cmake -S . -B build -DCMAKE_PREFIX_PATH=/path/to/prefix && cmake --build build && ./build/memwatch_example_cpp
// or
//   c++ main.cpp $(pkg-config --cflags --libs memwatch-cxx) -o example && LD_LIBRARY_PATH=/path/to/prefix/lib ./example
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <memwatch.hpp>
#include <vector>

int main() {
  try {
    memwatch::Watcher watcher;  // backend "auto"
    std::vector<std::uint64_t> readings(4, 0);
    watcher.watch(readings, "readings", "unit=ticks");

    int seen = 0;
    watcher.set_callback([&](const memwatch::ChangeEvent& e) {
      ++seen;
      std::cout << e.variable_name << " changed (region " << e.region_id << ", " << e.how_big << " bytes)\n";
      for (const auto& r : e.changed_ranges) {
        std::cout << "  bytes [" << r.offset << ", " << r.offset + r.length << "):";
        for (std::size_t i = r.offset; i < r.offset + r.length; i++)
          std::cout << ' ' << std::hex << std::setw(2) << std::setfill('0') << int(e.old_value->at(i)) << "->"
                    << std::setw(2) << int(e.new_value->at(i)) << std::dec;
        std::cout << '\n';
      }
      if (e.thread_id) std::cout << "  written by thread " << *e.thread_id << '\n';
    });

    readings[1] = 0x2a;  // detected

    watcher.check_changes();  // delivers to the callback and waits for it
    auto stats = watcher.stats();
    std::cout << "backend " << stats.backend << ": " << stats.events << " change event(s)\n";
    return seen == 1 ? 0 : 1;
  } catch (const memwatch::Error& e) {
    std::cerr << "memwatch: " << e.what() << '\n';
    return 1;
  }
}
