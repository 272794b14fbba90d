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

// locate copies a C writer location into w, resolving the frames of Go code
// with runtime.CallersFrames (Go's own tables: inlined calls expanded), and
// picks the user frame again: the innermost outside the Go runtime, this
// package, cgo glue and libc. Other frames keep the engine's resolution.
func locate(w *Where, loc *C.memwatch_where_t) {
	w.ThreadName = goStringOrEmpty(loc.thread_name)
	w.UnattributedFaults = uint32(loc.unattributed_faults)
	n := int(loc.frame_count)
	if n == 0 || loc.frames == nil {
		return
	}
	var lastIP uint64
	for i, f := range unsafe.Slice(loc.frames, n) {
		native := Frame{
			IP:           uint64(f.ip),
			Module:       goStringOrEmpty(f.module),
			ModuleOffset: uint64(f.module_offset),
			Function:     goStringOrEmpty(f.function),
			File:         goStringOrEmpty(f.file),
			Line:         uint32(f.line),
			Inlined:      f.inlined != 0,
		}
		goCode := runtime.FuncForPC(uintptr(native.IP)) != nil
		if goCode && i > 0 && native.IP == lastIP {
			continue // the engine's inlined frames of this IP: expanded below once
		}
		lastIP = native.IP
		if goCode {
			w.Stack = append(w.Stack, goFrames(native)...)
		} else {
			w.Stack = append(w.Stack, native)
		}
	}
	u := &w.Stack[0]
	for i := range w.Stack {
		if !isHelper(&w.Stack[i]) {
			u = &w.Stack[i]
			break
		}
	}
	w.Module, w.ModuleOffset, w.Function, w.File, w.Line = u.Module, u.ModuleOffset, u.Function, u.File, u.Line
}

// goFrames expands the Go code at native.IP into its inlined calls,
// innermost first, keeping native's module and offset.
func goFrames(native Frame) []Frame {
	// CallersFrames takes return addresses (it looks up pc-1: pass IP+1) and
	// expands inlined calls only while more PCs follow: the trailing 1 is no
	// function's PC and yields no frame.
	frames := runtime.CallersFrames([]uintptr{uintptr(native.IP) + 1, 1})
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
		})
		if !more {
			break
		}
	}
	if len(out) == 0 {
		return []Frame{native}
	}
	for i := range out[:len(out)-1] {
		out[i].Inlined = true
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
