package memwatch

import "sync"

// eventQueue feeds the Events channel from an unbounded FIFO, so the delivery
// thread never blocks on a slow reader and no event is dropped.
type eventQueue struct {
	mu     sync.Mutex
	items  []ChangeEvent
	closed bool
	wake   chan struct{}
	out    chan ChangeEvent
}

func newEventQueue() *eventQueue {
	q := &eventQueue{wake: make(chan struct{}, 1), out: make(chan ChangeEvent)}
	go q.run()
	return q
}

// push appends e; never blocks.
func (q *eventQueue) push(e ChangeEvent) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, e)
	}
	q.mu.Unlock()
	q.signal()
}

// close makes the forwarder close the channel after the queued events.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run forwards queued events to out in order, then closes out.
func (q *eventQueue) run() {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			e := q.items[0]
			q.items[0] = ChangeEvent{}
			q.items = q.items[1:]
			q.mu.Unlock()
			q.out <- e
			continue
		}
		if q.closed {
			q.mu.Unlock()
			close(q.out)
			return
		}
		q.mu.Unlock()
		<-q.wake
	}
}
