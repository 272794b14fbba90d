package memwatch

/*
#include <stdlib.h>
#include "memwatch_go.h"
#include "memwatch_store.h"
*/
import "C"

import (
	"fmt"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// SetValueStore sends the whole old and new values of regions larger than
// the max-value option ([WithMaxValueBytes], default 4096) to the MemStream
// store called name: a key-value store in POSIX shared memory
// (/dev/shm/<name>) that any process can open with [OpenStore]. The store is
// created with capacity bytes and least-recently-used eviction if it does not
// exist (capacity 0 only opens an existing store); an existing store keeps
// its own capacity and policy.
//
// From then on each event of such a region carries StorageKeyNew, the key of
// its new value, and StorageKeyOld, the key of its old value while the store
// still holds it (evicted values leave the key empty); OldValue and NewValue
// stay nil. Keys are "memwatch/{adapter_id}/{region_id}/{epoch}". The current
// values of regions already watched are put at once. Keys name no process and
// region ids are per process, so give each watching process a store of its
// own; readers may be any number of processes.
//
// Calling it again replaces the store; [Watcher.ClearValueStore] stops it.
// It fails with an ErrInvalidArgument error for an empty or invalid store
// name (1..200 characters of [A-Za-z0-9._-], one leading '/' optional), a
// negative capacity, or a store that cannot be created or opened (the message
// says why), and with ErrClosed after Close.
func (w *Watcher) SetValueStore(name string, capacity int) error {
	const op = "set value store"
	if name == "" {
		return errInvalid(op, "store name is empty (ClearValueStore stops the value store)")
	}
	if capacity < 0 {
		return errInvalid(op, fmt.Sprintf("capacity must not be negative, got %d", capacity))
	}
	cname, err := cString(op, "store name", name)
	if err != nil {
		return err
	}
	defer freeCString(cname)
	return w.setValueStore(op, cname, capacity)
}

// ClearValueStore stops sending large values to the value store: later events
// of large regions carry no storage keys (and still no values). Values already
// in the store stay there. It returns an ErrClosed error after Close.
func (w *Watcher) ClearValueStore() error {
	return w.setValueStore("clear value store", nil, 0)
}

func (w *Watcher) setValueStore(op string, cname *C.char, capacity int) error {
	s := w.s
	ptr, err := s.acquire(op)
	if err != nil {
		return err
	}
	defer s.release()
	_, err = callC(op, func() C.int {
		return C.memwatch_watcher_set_value_store(ptr, cname, C.uint64_t(capacity))
	})
	return err
}

// Store is a read handle on a MemStream store, such as the one a watcher's
// large values go to ([Watcher.SetValueStore]). It may be used from several
// goroutines at once. Close it when done; an unreachable Store is closed by
// a finalizer.
type Store struct {
	name string
	hint atomic.Int64 // buffer size for the next Get: the last value's size

	mu sync.RWMutex // Get holds it shared, Close exclusively
	c  *C.cache_t   // nil once closed
}

// StoreError is the error type of the Store functions.
//
// errors.Is(err, fs.ErrNotExist) holds when the store or the key does not
// exist, and errors.Is(err, fs.ErrClosed) for a Store that was closed.
type StoreError struct {
	// Op is the operation that failed: "open store", "get", "unlink store".
	Op string
	// Name is the store's name.
	Name string
	// Code is the C API's CACHE_ERR_* value (memwatch_store.h), such as -1
	// (CACHE_ERR_NOT_FOUND) or -2 (CACHE_ERR_INVALID); 0 for a closed Store.
	Code int
	// Message describes the failure.
	Message string
}

// The C API's codes (memwatch_store.h) this file tells apart.
const (
	cacheErrNotFound = -1 // CACHE_ERR_NOT_FOUND
	cacheErrInvalid  = -2 // CACHE_ERR_INVALID
)

// Error formats the failure as "memwatch: <op> <name>: <message>".
func (e *StoreError) Error() string {
	return fmt.Sprintf("memwatch: %s %q: %s", e.Op, e.Name, e.Message)
}

// Is makes errors.Is(err, fs.ErrNotExist) hold for a missing store or key
// and errors.Is(err, fs.ErrClosed) for a closed Store.
func (e *StoreError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Code == cacheErrNotFound
	case fs.ErrClosed:
		return e.Code == 0
	}
	return false
}

// storeCall runs f, one call into the store's C API, on a locked OS thread
// and turns a negative result into a *StoreError with cache_last_error's
// message (thread-local in the C library).
func storeCall(op, name string, f func() C.int64_t) (int64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := int64(f())
	if rc < 0 {
		msg := C.GoString(C.cache_last_error())
		if msg == "" {
			msg = fmt.Sprintf("error %d", rc)
		}
		return rc, &StoreError{Op: op, Name: name, Code: int(rc), Message: msg}
	}
	return rc, nil
}

// OpenStore opens the existing MemStream store called name, for instance
// the value store another process's watcher writes to. It fails with an
// error matching fs.ErrNotExist if there is no such store.
func OpenStore(name string) (*Store, error) {
	const op = "open store"
	cname, err := cString(op, "store name", name)
	if err != nil {
		return nil, &StoreError{Op: op, Name: name, Code: cacheErrInvalid, Message: "store name contains a NUL byte"}
	}
	defer freeCString(cname)
	var c *C.cache_t
	_, err = storeCall(op, name, func() C.int64_t {
		if c = C.cache_open(cname); c != nil {
			return 0
		}
		return C.int64_t(C.cache_last_error_code())
	})
	if err != nil {
		return nil, err
	}
	s := &Store{name: name, c: c}
	s.hint.Store(4096)
	runtime.SetFinalizer(s, func(s *Store) { s.Close() })
	return s, nil
}

// Name returns the store's name as given to OpenStore.
func (s *Store) Name() string { return s.name }

// Get returns a copy of the value stored under key, and found == false (with
// a nil value and error) when the store does not hold key: never put, or
// evicted since. Other failures, and a closed Store, return an error.
func (s *Store) Get(key string) (value []byte, found bool, err error) {
	const op = "get"
	kb := []byte(key)
	var kp unsafe.Pointer
	if len(kb) > 0 {
		kp = unsafe.Pointer(&kb[0])
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.c == nil {
		return nil, false, &StoreError{Op: op, Name: s.name, Code: 0, Message: "store is closed"}
	}
	size := s.hint.Load()
	for {
		buf := make([]byte, max(size, 1))
		n, err := storeCall(op, s.name, func() C.int64_t {
			return C.cache_get(s.c, kp, C.size_t(len(kb)), unsafe.Pointer(&buf[0]), C.size_t(len(buf)))
		})
		runtime.KeepAlive(kb)
		if err != nil {
			if err.(*StoreError).Code == cacheErrNotFound {
				return nil, false, nil
			}
			return nil, false, err
		}
		s.hint.Store(max(n, 64))
		if n <= int64(len(buf)) {
			if n < int64(len(buf))/2 {
				return append([]byte{}, buf[:n]...), true, nil
			}
			return buf[:n:n], true, nil
		}
		size = n // too small: nothing was copied; retry with the value's size
	}
}

// Close releases the handle; the store and its contents stay (see
// UnlinkStore). Idempotent; Get on a closed Store returns an error matching
// fs.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	c := s.c
	s.c = nil
	s.mu.Unlock()
	if c != nil {
		C.cache_close(c)
	}
	runtime.SetFinalizer(s, nil)
	return nil
}

// UnlinkStore removes the store called name from the system (/dev/shm).
// Handles already open, including a watcher's, keep working until they are
// closed. It fails with an error matching fs.ErrNotExist if there is no such
// store.
func UnlinkStore(name string) error {
	const op = "unlink store"
	cname, err := cString(op, "store name", name)
	if err != nil {
		return &StoreError{Op: op, Name: name, Code: cacheErrInvalid, Message: "store name contains a NUL byte"}
	}
	defer freeCString(cname)
	_, err = storeCall(op, name, func() C.int64_t { return C.int64_t(C.cache_unlink(cname)) })
	return err
}
