// Package memwatch reports changes to watched memory: which variable, which
// bytes, the old and new values, when, and (with the "protect" backend) which
// thread wrote them.
//
// The default backend, "auto", uses "writewatch" (userfaultfd write
// protection, Linux 6.7+: no signals) where the kernel has it and "protect"
// (mprotect and a SIGSEGV handler) otherwise; "poll" hashes the regions.
// [Watcher.Stats] tells which one a watcher uses.
//
// It is the Go binding of memwatch: a thin cgo layer over the C ABI of the
// Rust engine (crates/memwatch-capi, built by crates/memwatch-c, linked statically from lib/libmemwatch.a).
// Build that library once, then use the go tool as usual:
//
//	cd bindings-go
//	go generate      # runs build-lib.sh: cargo build -p memwatch-c --release, copy to lib/
//	go test ./...
//
// # Usage
//
//	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendProtect))
//	if err != nil { ... }
//	defer w.Close()
//	buf, _ := memwatch.Alloc(100) // page-aligned, outside the Go heap
//	defer memwatch.Free(buf)
//	id, err := w.Watch(buf, "buffer")
//	buf[0] = 42
//	events, err := w.CheckChanges() // one event: region id, bytes [0,1), old 0x00, new 0x2a
//
// Events reach the program in one of two ways. Without a receiver they wait for
// [Watcher.CheckChanges], which returns them. With a receiver (a function set
// by [Watcher.SetCallback], the channel from [Watcher.Events], or both, which
// then each get every event) they are handed to it on the watcher's delivery
// thread and CheckChanges returns none. Either way CheckChanges is
// synchronous: every write made before the call is in its result or has been
// handed to the receivers by the time it returns.
//
// # Large values
//
// Events carry whole values only up to [WithMaxValueBytes]. With
// [Watcher.SetValueStore] the values of larger regions go to a MemStream
// store in shared memory and events carry their keys (StorageKeyOld,
// StorageKeyNew), which [OpenStore] and [Store.Get] read back, in this or any
// other process. Use one store per watching process: keys name no process.
//
// # Memory
//
// Watch accepts any []byte. Slices in the Go heap are pinned with
// [runtime.Pinner] while watched, so the garbage collector neither moves nor
// frees them, and unpinned by Unwatch or Close. With the "protect" backend the
// engine write-protects whole pages: other Go objects sharing a page with a
// small watched slice then take one extra (handled) fault on their first write,
// and a system call that writes into such a page (read(2) into a neighbouring
// buffer, say) fails with EFAULT. [Alloc] returns page-aligned memory outside
// the Go heap that shares its pages with nothing; prefer it for the "protect"
// backend. The "writewatch" and "poll" backends have no such effects.
//
// # Signals
//
// The "protect" backend installs a SIGSEGV handler (SA_ONSTACK, as Go requires)
// that handles faults on its own pages and forwards every other fault to the
// handler installed before it, so Go's nil-pointer panics keep working and can
// be recovered as usual.
//
// # Threads
//
// Every method may be called from any goroutine. Callbacks run one at a time
// per watcher on the watcher's delivery thread (a native thread, attached to
// the Go runtime for the call). A callback may call any method of its watcher,
// including Close.
package memwatch

//go:generate sh ./build-lib.sh
