package memwatch

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// PageSize returns the operating system's page size in bytes, the unit in
// which the protect backend works.
func PageSize() int { return os.Getpagesize() }

// mappings records the memory handed out by Alloc (start address -> mapped
// length); watched records every region currently watched by any watcher, so
// that Free can refuse to unmap watched memory.
var memState = struct {
	sync.Mutex
	mappings map[uintptr][]byte
	watched  map[*pinnedRegion]struct{}
}{mappings: map[uintptr][]byte{}, watched: map[*pinnedRegion]struct{}{}}

func trackWatched(r *pinnedRegion) {
	memState.Lock()
	memState.watched[r] = struct{}{}
	memState.Unlock()
}

func untrackWatched(r *pinnedRegion) {
	memState.Lock()
	delete(memState.watched, r)
	memState.Unlock()
}

// Alloc returns a zeroed slice of size bytes in fresh page-aligned memory
// outside the Go heap (an anonymous private mapping, rounded up to whole
// pages). Nothing else shares its pages, which makes it the right memory for
// the protect backend; the garbage collector never touches it. Release it
// with Free once no watcher watches it.
func Alloc(size int) ([]byte, error) {
	if size <= 0 {
		return nil, errInvalid("alloc", fmt.Sprintf("size must be positive, got %d", size))
	}
	page := PageSize()
	if size > int(^uint(0)>>1)-page {
		return nil, errInvalid("alloc", fmt.Sprintf("size %d is too large", size))
	}
	mapped := (size + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, mapped, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, &Error{Code: CodeOS, Op: "alloc", Message: fmt.Sprintf("mmap of %d bytes: %v", mapped, err)}
	}
	memState.Lock()
	memState.mappings[uintptr(unsafe.Pointer(&mem[0]))] = mem
	memState.Unlock()
	return mem[:size:size], nil
}

// Free unmaps memory returned by Alloc. It fails with an ErrInvalidArgument
// error when buf does not start where an Alloc result starts (or was freed
// already), and when any part of the mapping is still watched: unwatch it (or
// close its watcher) first. After Free, buf must not be used.
func Free(buf []byte) error {
	if len(buf) == 0 && cap(buf) == 0 {
		return errInvalid("free", "empty slice: not memory from Alloc")
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	memState.Lock()
	defer memState.Unlock()
	mem, ok := memState.mappings[start]
	if !ok {
		return errInvalid("free", "slice does not start at memory returned by Alloc (or was already freed)")
	}
	end := start + uintptr(len(mem))
	for r := range memState.watched {
		if r.start < end && start < r.start+uintptr(r.size) {
			return errInvalid("free", "memory is still watched; unwatch it or close its watcher first")
		}
	}
	if err := syscall.Munmap(mem); err != nil {
		return &Error{Code: CodeOS, Op: "free", Message: fmt.Sprintf("munmap: %v", err)}
	}
	delete(memState.mappings, start)
	return nil
}
