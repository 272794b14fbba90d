// JS frames of located writes (locateWriters), against Node's V8 headers.
//
// Two halves, registered with memwatch-core's runtime-frames hook by lib.rs:
//   - mw_v8_capture runs in memwatch's SIGSEGV handler on the faulting thread:
//     v8::Isolate::GetStackSample with the signal's registers (the call V8's
//     own CPU profiler makes from its SIGPROF handler) writes the faulting pc,
//     then one code address per JS frame: the bytecode address (BytecodeArray
//     + offset) of an interpreted frame, the pc of a compiled one. It allocates nothing and
//     takes no lock. The addon is linked with -z now, so no call here goes
//     through a lazily bound PLT entry.
//   - A v8::CodeEventHandler per isolate (mw_v8_enable, on the JS thread) keeps
//     a map code start -> (size, function, script, line) of every code object
//     (bytecode and machine code; existing code is logged when it is enabled,
//     relocations move entries). mw_v8_lookup (memwatch's worker, when the
//     event is built) finds the code holding an address.
// Only the function's start line is public API (CodeEvent::GetScriptLine);
// the statement's line would need V8's internal source position tables.

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <v8.h>
#include <v8-profiler.h>

namespace {

struct Code {
  size_t size;
  std::string function;
  std::string script;
  int line;
  int type;
};

std::mutex g_mu;
// Leaked: code events may arrive from any isolate until the process exits.
std::map<uintptr_t, Code>* g_code = new std::map<uintptr_t, Code>();

// Drops every entry overlapping [start, start + size): that memory now holds
// other code.
void erase_overlaps(uintptr_t start, size_t size) {
  auto it = g_code->upper_bound(start);
  if (it != g_code->begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size > start) it = prev;
  }
  while (it != g_code->end() && it->first < start + (size ? size : 1)) it = g_code->erase(it);
}

std::string utf8(v8::Isolate* isolate, v8::Local<v8::String> s) {
  if (s.IsEmpty()) return std::string();
  v8::String::Utf8Value v(isolate, s);
  return *v ? std::string(*v, v.length()) : std::string();
}

class Handler : public v8::CodeEventHandler {
 public:
  explicit Handler(v8::Isolate* isolate) : v8::CodeEventHandler(isolate), isolate_(isolate) {}

  void Handle(v8::CodeEvent* ev) override {
    uintptr_t start = ev->GetCodeStartAddress();
    if (ev->GetCodeType() == v8::kRelocationType) {
      std::lock_guard<std::mutex> lock(g_mu);
      auto it = g_code->find(ev->GetPreviousCodeStartAddress());
      if (it == g_code->end()) return;
      Code moved = std::move(it->second);
      g_code->erase(it);
      erase_overlaps(start, moved.size);
      g_code->emplace(start, std::move(moved));
      return;
    }
    v8::HandleScope scope(isolate_);
    Code c;
    c.size = ev->GetCodeSize();
    c.function = utf8(isolate_, ev->GetFunctionName());
    c.script = utf8(isolate_, ev->GetScriptName());
    c.line = ev->GetScriptLine();
    c.type = ev->GetCodeType();
    std::lock_guard<std::mutex> lock(g_mu);
    erase_overlaps(start, c.size);
    g_code->emplace(start, std::move(c));
  }

  v8::Isolate* isolate() const { return isolate_; }

 private:
  v8::Isolate* isolate_;
};

std::vector<Handler*>* g_handlers = new std::vector<Handler*>();  // under g_mu

}  // namespace

extern "C" {

// What mw_v8_lookup found (lib.rs mirrors it as V8Code).
struct mw_v8_code {
  uint64_t start;
  int32_t line;
  int32_t type;  // 1 = JS (a function, script or eval), 0 = V8's own code
  char function[256];
  char script[1024];
};

// Starts the code map of the calling thread's isolate. Returns that isolate
// the first time (pass it to mw_v8_disable when its environment ends), NULL
// when it already has one or the thread has no isolate.
void* mw_v8_enable(void) {
  v8::Isolate* isolate = v8::Isolate::TryGetCurrent();
  if (isolate == nullptr) return nullptr;
  Handler* h;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (Handler* old : *g_handlers)
      if (old->isolate() == isolate) return nullptr;
    h = new Handler(isolate);
    g_handlers->push_back(h);
  }
  // Logs the code that exists already (calls Handle, which takes g_mu).
  h->Enable();
  return isolate;
}

// Stops the code map of `isolate` (its environment is being torn down, on
// its own thread, before the isolate is disposed). Its entries stay.
void mw_v8_disable(void* isolate) {
  Handler* found = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (size_t i = 0; i < g_handlers->size(); i++) {
      if ((*g_handlers)[i]->isolate() == isolate) {
        found = (*g_handlers)[i];
        g_handlers->erase(g_handlers->begin() + i);
        break;
      }
    }
  }
  if (found != nullptr) {
    found->Disable();
    delete found;
  }
}

// memwatch_core::RuntimeCapture, called in the SIGSEGV handler: the code
// addresses of the faulting thread's JS frames, innermost first. Nothing
// when the thread runs no isolate (libuv's pool, memwatch's own threads).
size_t mw_v8_capture(void* ucontext, uint64_t* out, size_t max_words, void* ctx) {
  (void)ctx;
  v8::Isolate* isolate = v8::Isolate::TryGetCurrent();
  if (isolate == nullptr || ucontext == nullptr) return 0;
  const ucontext_t* uc = static_cast<const ucontext_t*>(ucontext);
  v8::RegisterState regs;
#if defined(__x86_64__)
  regs.pc = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
  regs.sp = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RSP]);
  regs.fp = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RBP]);
#elif defined(__aarch64__)
  regs.pc = reinterpret_cast<void*>(uc->uc_mcontext.pc);
  regs.sp = reinterpret_cast<void*>(uc->uc_mcontext.sp);
  regs.fp = reinterpret_cast<void*>(uc->uc_mcontext.regs[29]);
  regs.lr = reinterpret_cast<void*>(uc->uc_mcontext.regs[30]);
#else
  return 0;
#endif
  static_assert(sizeof(void*) == sizeof(uint64_t), "64-bit only");
  if (max_words < 2) return 0;
  // Word 0: the faulting pc itself. GetStackSample leaves out the frame of
  // optimized code that is running at the fault (V8's profiler names it
  // from the sample's pc); the resolver keeps it when it is JS code.
  out[0] = reinterpret_cast<uint64_t>(regs.pc);
  v8::SampleInfo info;
  std::memset(&info, 0, sizeof info);
  isolate->GetStackSample(regs, reinterpret_cast<void**>(out + 1), max_words - 1, &info);
  size_t n = info.frames_count < max_words - 1 ? info.frames_count : max_words - 1;
  return n + 1;
}

// The code holding `addr`, from the code maps: 1 and *out filled, or 0.
int mw_v8_lookup(uint64_t addr, mw_v8_code* out) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_code->upper_bound(static_cast<uintptr_t>(addr));
  if (it == g_code->begin()) return 0;
  --it;
  if (addr >= it->first + (it->second.size ? it->second.size : 1)) return 0;
  const Code& c = it->second;
  out->start = it->first;
  out->line = c.line;
  switch (c.type) {
    case v8::kFunctionType:
    case v8::kInterpretedFunctionType:
    case v8::kLazyCompileType:
    case v8::kScriptType:
    case v8::kEvalType:
      out->type = 1;
      break;
    default:
      out->type = 0;
  }
  std::snprintf(out->function, sizeof out->function, "%s", c.function.c_str());
  std::snprintf(out->script, sizeof out->script, "%s", c.script.c_str());
  return 1;
}

}  // extern "C"
