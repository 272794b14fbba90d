package memwatch

/*
#include "memwatch_go.h"
*/
import "C"

import "unsafe"

// RegionID identifies a watched region. Ids start at 1, are unique for the life
// of the process and are never reused, so a stale id cannot unwatch another
// region.
type RegionID uint32

// Where tells who made a change, as far as the backend knows.
type Where struct {
	// ThreadID is the kernel thread id (gettid) of the writer whose fault
	// opened the page's writable window; 0 when unknown (poll backend, or the
	// fault ring was full).
	ThreadID uint32
	// FaultIP is the instruction pointer of that write; 0 when unknown.
	FaultIP uint64
	// File is the source file of the user frame (WithLocateWriters): the
	// innermost frame outside the Go runtime, this package and libc; empty
	// when not located.
	File string
	// Function is the function of the user frame; empty when not located.
	Function string
	// Line is the source line of the user frame; 0 when unknown.
	Line uint32
	// ThreadName is the writing thread's kernel name; empty when not located.
	ThreadName string
	// Module is the executable or shared library of the user frame.
	Module string
	// ModuleOffset is the user frame's address relative to Module's load address.
	ModuleOffset uint64
	// UnattributedFaults counts first writes to other pages of the region
	// merged into this event without a location of their own.
	UnattributedFaults uint32
	// Stack is the writer's stack, innermost first (helpers included); nil
	// when not located.
	Stack []Frame
}

// Frame is one frame of a located writer's stack.
type Frame struct {
	// IP is the instruction address: the write itself for the first frame, a
	// return address minus one for callers; inlined frames share their IP.
	IP uint64
	// Module is the executable or shared library holding IP.
	Module string
	// ModuleOffset is IP relative to Module's load address.
	ModuleOffset uint64
	// Function is the function name (Go: package path qualified).
	Function string
	// File is the source file; empty without debug info.
	File string
	// Line is the source line; 0 when unknown.
	Line uint32
	// Inlined is true when this frame was inlined into the next one.
	Inlined bool
}

// ByteRange is a run of changed bytes, relative to the start of the region.
type ByteRange struct {
	// Offset of the first changed byte from the start of the region.
	Offset int
	// Len is the number of changed bytes.
	Len int
}

// ChangeEvent describes one change to one watched region. Every slice in it is
// a private copy owned by the receiver.
type ChangeEvent struct {
	// Seq is a process-wide sequence number, increasing in detection order.
	Seq uint64
	// TimestampNs is the CLOCK_MONOTONIC time in nanoseconds of the first
	// write seen (protect) or of detection (poll). Not wall-clock time.
	TimestampNs uint64
	// AdapterID tells which language binding made the watcher (6 for Go).
	AdapterID uint32
	// RegionID is the region that changed, as returned by Watch.
	RegionID RegionID
	// VariableName is the name given to Watch.
	VariableName string
	// Where tells who wrote, where known.
	Where Where
	// HowBig is the size of the region in bytes.
	HowBig int
	// ChangedRanges lists the changed byte runs in ascending offset order.
	ChangedRanges []ByteRange
	// OldPreview holds the first preview bytes of the region before the
	// change (empty without snapshots).
	OldPreview []byte
	// NewPreview holds the first preview bytes of the region after the change.
	NewPreview []byte
	// OldValue is the whole old value, or nil when the region is larger than
	// the max-value option or snapshots are off.
	OldValue []byte
	// NewValue is the whole new value, or nil when the region is larger than
	// the max-value option.
	NewValue []byte
	// StorageKeyOld is, for a region larger than the max-value option while
	// a value store is set (Watcher.SetValueStore), the key under which the
	// store holds the old value ("memwatch/{adapter_id}/{region_id}/{epoch}");
	// empty otherwise, and when the store no longer holds it (evicted) or
	// snapshots are off. Read it with OpenStore and Store.Get.
	StorageKeyOld string
	// StorageKeyNew is the key of the new value in the value store, under
	// the same conditions as StorageKeyOld; empty when the store refused it.
	StorageKeyNew string
	// Metadata is the metadata given to Watch (WithMetadata); empty when none.
	Metadata string
	// Coalesced is the number of changes this event stands for: 1, or more
	// when later changes of the region were merged into it while it waited
	// in a full queue (1024 events). Then OldValue is the first change's,
	// NewValue the last's, and ChangedRanges their union.
	Coalesced uint32
}

// goBytes copies n bytes at p; nil when p is NULL (an absent value).
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	if p == nil {
		return nil
	}
	out := make([]byte, int(n))
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	}
	return out
}

// goStringOrEmpty copies a C string; NULL becomes "".
func goStringOrEmpty(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// convertEvent copies a C event (valid only during the callback or until
// memwatch_events_free) into Go memory.
func convertEvent(ev *C.memwatch_change_event_t) ChangeEvent {
	e := ChangeEvent{
		Seq:          uint64(ev.seq),
		TimestampNs:  uint64(ev.timestamp_ns),
		AdapterID:    uint32(ev.adapter_id),
		RegionID:     RegionID(ev.region_id),
		VariableName: goStringOrEmpty(ev.variable_name),
		Where: Where{
			ThreadID: uint32(ev.thread_id),
			FaultIP:  uint64(ev.fault_ip),
			File:     goStringOrEmpty(ev.file),
			Function: goStringOrEmpty(ev.function),
			Line:     uint32(ev.line),
		},
		HowBig:        int(ev.how_big),
		OldPreview:    goBytes(ev.old_preview, ev.old_preview_len),
		NewPreview:    goBytes(ev.new_preview, ev.new_preview_len),
		OldValue:      goBytes(ev.old_value, ev.old_value_len),
		NewValue:      goBytes(ev.new_value, ev.new_value_len),
		StorageKeyOld: goStringOrEmpty(ev.storage_key_old),
		StorageKeyNew: goStringOrEmpty(ev.storage_key_new),
		Metadata:      goStringOrEmpty(ev.metadata),
		Coalesced:     uint32(ev.coalesced),
	}
	if ev.location != nil {
		locate(&e.Where, ev.location)
	}
	if e.OldPreview == nil {
		e.OldPreview = []byte{}
	}
	if e.NewPreview == nil {
		e.NewPreview = []byte{}
	}
	if n := int(ev.changed_range_count); n > 0 && ev.changed_ranges != nil {
		ranges := unsafe.Slice(ev.changed_ranges, n)
		e.ChangedRanges = make([]ByteRange, n)
		for i, r := range ranges {
			e.ChangedRanges[i] = ByteRange{Offset: int(r.offset), Len: int(r.length)}
		}
	} else {
		e.ChangedRanges = []ByteRange{}
	}
	return e
}

// convertEvents copies an array from memwatch_watcher_check_changes.
func convertEvents(evs *C.memwatch_change_event_t, n C.size_t) []ChangeEvent {
	if n == 0 || evs == nil {
		return []ChangeEvent{}
	}
	arr := unsafe.Slice(evs, int(n))
	out := make([]ChangeEvent, len(arr))
	for i := range arr {
		out[i] = convertEvent(&arr[i])
	}
	return out
}
