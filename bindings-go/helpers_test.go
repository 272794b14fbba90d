package memwatch_test

import (
	"runtime"
	"time"
)

// msDuration converts a millisecond count from a scenario to a Duration.
func msDuration(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

// lockThread pins the goroutine to its OS thread (for exact thread ids).
func lockThread() { runtime.LockOSThread() }

// unlockThread undoes lockThread.
func unlockThread() { runtime.UnlockOSThread() }
