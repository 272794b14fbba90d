package memwatch

import "fmt"

// ErrorCode is the stable numeric code of a failure, the same as the C ABI's
// memwatch_error_t (always negative).
type ErrorCode int

// Error codes; see [Error].
const (
	// CodeInvalidArgument: a bad argument (empty slice, bad option, unknown backend, NUL in a name).
	CodeInvalidArgument ErrorCode = -1
	// CodeUnmapped: the memory is not (fully) mapped.
	CodeUnmapped ErrorCode = -2
	// CodeReadOnly: the memory is mapped but not writable, so it can never change.
	CodeReadOnly ErrorCode = -3
	// CodeOverlap: the range overlaps a region this watcher already watches.
	CodeOverlap ErrorCode = -4
	// CodeUnsupported: the backend cannot be used on this system.
	CodeUnsupported ErrorCode = -5
	// CodeClosed: the watcher was closed.
	CodeClosed ErrorCode = -6
	// CodeOS: an operating-system call failed.
	CodeOS ErrorCode = -7
	// CodeInternal: a bug in memwatch (a caught panic in the engine).
	CodeInternal ErrorCode = -8
	// CodeDatabase: RecordTo could not open or reach the database.
	CodeDatabase ErrorCode = -9
)

// String returns a short description of the code, such as "invalid argument".
func (c ErrorCode) String() string {
	switch c {
	case CodeInvalidArgument:
		return "invalid argument"
	case CodeUnmapped:
		return "memory not mapped"
	case CodeReadOnly:
		return "memory is read-only"
	case CodeOverlap:
		return "overlapping watch"
	case CodeUnsupported:
		return "backend unsupported"
	case CodeClosed:
		return "watcher is closed"
	case CodeOS:
		return "operating system error"
	case CodeInternal:
		return "internal error"
	case CodeDatabase:
		return "database error"
	}
	return fmt.Sprintf("error %d", int(c))
}

// Error is the error type of every memwatch failure. Compare with errors.Is
// against the Err* values (which match on Code), or inspect Code directly:
//
//	if errors.Is(err, memwatch.ErrOverlap) { ... }
type Error struct {
	// Code says what kind of failure this is.
	Code ErrorCode
	// Op is the operation that failed ("watch", "new watcher", ...); may be empty.
	Op string
	// Message is the engine's description; empty for the Err* sentinels.
	Message string
}

// Error formats the failure as "memwatch: <op>: <message>".
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code.String()
	}
	if e.Op != "" {
		return "memwatch: " + e.Op + ": " + msg
	}
	return "memwatch: " + msg
}

// Is reports whether target is the sentinel for e's code, so that
// errors.Is(err, ErrClosed) holds for every closed-watcher error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is; each matches every *Error with the same Code.
var (
	// ErrInvalidArgument matches CodeInvalidArgument errors.
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	// ErrUnmapped matches CodeUnmapped errors.
	ErrUnmapped = &Error{Code: CodeUnmapped}
	// ErrReadOnly matches CodeReadOnly errors.
	ErrReadOnly = &Error{Code: CodeReadOnly}
	// ErrOverlap matches CodeOverlap errors.
	ErrOverlap = &Error{Code: CodeOverlap}
	// ErrUnsupported matches CodeUnsupported errors.
	ErrUnsupported = &Error{Code: CodeUnsupported}
	// ErrClosed matches CodeClosed errors: every method of a closed watcher returns one.
	ErrClosed = &Error{Code: CodeClosed}
	// ErrOS matches CodeOS errors.
	ErrOS = &Error{Code: CodeOS}
	// ErrInternal matches CodeInternal errors.
	ErrInternal = &Error{Code: CodeInternal}
	// ErrDatabase matches CodeDatabase errors.
	ErrDatabase = &Error{Code: CodeDatabase}
)

// errClosed is the error a method returns on a closed watcher.
func errClosed(op string) error {
	return &Error{Code: CodeClosed, Op: op, Message: "watcher is closed"}
}

// errInvalid is an InvalidArgument error raised on the Go side.
func errInvalid(op, msg string) error {
	return &Error{Code: CodeInvalidArgument, Op: op, Message: msg}
}
