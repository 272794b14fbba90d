package memwatch

// Link flags: the static libmemwatch.a that build-lib.sh (go generate) copies
// into lib/, plus the system libraries the Rust standard library inside it
// needs. The headers come straight from the C ABI crate (memwatch.h, and
// memwatch_store.h with the store's cache_* names libmemwatch.a exports).

/*
#cgo CFLAGS: -I${SRCDIR}/../crates/memwatch-capi/include
#cgo LDFLAGS: ${SRCDIR}/lib/libmemwatch.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
#include <stdlib.h>
#include "memwatch_go.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// callC runs f, which makes one C ABI call returning an int status, on a
// locked OS thread so that memwatch_last_error (thread-local in the C
// library) still describes that call when the status is negative.
func callC(op string, f func() C.int) (C.int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := f()
	if rc < 0 {
		return rc, lastError(op, rc)
	}
	return rc, nil
}

// lastError builds the Go error for status rc from the calling thread's
// memwatch_last_error. The caller must still be on the thread that made the call.
func lastError(op string, rc C.int) error {
	msg := C.GoString(C.memwatch_last_error())
	code := ErrorCode(rc)
	if c := ErrorCode(C.memwatch_last_error_code()); c < 0 {
		code = c
	}
	return &Error{Code: code, Op: op, Message: msg}
}

// cString returns a C copy of s (freed with freeCString), or an
// InvalidArgument error when s contains a NUL byte, which C strings cannot hold.
func cString(op, what, s string) (*C.char, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return nil, &Error{Code: CodeInvalidArgument, Op: op, Message: what + " contains a NUL byte"}
		}
	}
	return C.CString(s), nil
}

// freeCString frees a string from cString; nil is ignored.
func freeCString(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}
