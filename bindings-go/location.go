package memwatch

/*
#include "memwatch_go.h"
*/
import "C"

import (
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"
)

// locate copies a C writer location into w, expanding the frames of Go
// code with runtime.CallersFrames (inlined calls included), and picks the
// user frame again: the innermost outside the Go runtime, this package, cgo
// glue and libc.
func locate(w *Where, loc *C.memwatch_where_t) {
	w.ThreadName = goStringOrEmpty(loc.thread_name)
	w.UnattributedFaults = uint32(loc.unattributed_faults)
	n := int(loc.frame_count)
	if n == 0 || loc.frames == nil {
		return
	}
	for _, f := range unsafe.Slice(loc.frames, n) {
		native := Frame{
			IP:           uint64(f.ip),
			Module:       goStringOrEmpty(f.module),
			ModuleOffset: uint64(f.module_offset),
			Function:     goStringOrEmpty(f.function),
			File:         goStringOrEmpty(f.file),
			Line:         uint32(f.line),
			Inlined:      f.inlined != 0,
		}
		if f.inlined != 0 {
			// The engine's inline expansion of a Go PC is replaced below.
			if runtime.FuncForPC(uintptr(f.ip)) != nil {
				continue
			}
		}
		w.Stack = append(w.Stack, goFrames(native)...)
	}
	for i := range w.Stack {
		if !isHelper(&w.Stack[i]) {
			u := &w.Stack[i]
			w.Module, w.ModuleOffset, w.Function, w.File, w.Line = u.Module, u.ModuleOffset, u.Function, u.File, u.Line
			return
		}
	}
	u := &w.Stack[0]
	w.Module, w.ModuleOffset, w.Function, w.File, w.Line = u.Module, u.ModuleOffset, u.Function, u.File, u.Line
}

// goFrames expands a frame of Go code into its inlined calls (innermost
// first); other frames are returned as they are.
func goFrames(native Frame) []Frame {
	if runtime.FuncForPC(uintptr(native.IP)) == nil {
		return []Frame{native}
	}
	// CallersFrames takes return addresses and looks up pc-1: pass IP+1.
	frames := runtime.CallersFrames([]uintptr{uintptr(native.IP) + 1})
	var out []Frame
	for {
		f, more := frames.Next()
		if f.Function == "" {
			break
		}
		out = append(out, Frame{
			IP:           native.IP,
			Module:       native.Module,
			ModuleOffset: native.ModuleOffset,
			Function:     f.Function,
			File:         f.File,
			Line:         uint32(f.Line),
			Inlined:      more,
		})
		if !more {
			break
		}
	}
	if len(out) == 0 {
		return []Frame{native}
	}
	return out
}

// packagePath is this package's import path prefix in function names.
var packagePath = func() string {
	pc, _, _, _ := runtime.Caller(0)
	name := runtime.FuncForPC(pc).Name() // ".../bindings-go.init.func..."
	if i := strings.LastIndex(name, "/"); i >= 0 {
		if j := strings.Index(name[i:], "."); j >= 0 {
			return name[:i+j+1]
		}
	}
	return name
}()

// isHelper says whether a frame is one a user would not point at.
func isHelper(f *Frame) bool {
	base := filepath.Base(f.Module)
	return strings.HasPrefix(f.Function, "runtime.") ||
		strings.HasPrefix(f.Function, packagePath) ||
		strings.HasPrefix(f.Function, "_cgo") ||
		strings.HasPrefix(base, "libc.so") || strings.HasPrefix(base, "libmemwatch")
}
