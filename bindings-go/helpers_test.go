package memwatch_test

import "time"

// msDuration converts a millisecond count from a scenario to a Duration.
func msDuration(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
