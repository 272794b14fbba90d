package io.memwatch;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.time.Duration;

/**
 * A running recorder, made by {@link MemoryWatcher#recordTo(String)}: writes every change event
 * of its watcher into SQLite or PostgreSQL from its own thread. Closing it (or the watcher) ends
 * the recording once what is queued is written.
 */
public final class Recorder implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long handle;
    private final Cleaner.Cleanable cleanable;

    Recorder(long handle) {
        this.handle = handle;
        this.cleanable = CLEANER.register(this, () -> Native.recorderDestroy(handle));
    }

    /**
     * The recorder's counters now.
     *
     * @return a snapshot of the counters
     */
    public RecorderStats stats() {
        try {
            long[] v = Native.recorderStats(handle);
            return new RecorderStats(v[0], v[1], v[2], v[3], v[4], v[5], v[6] != 0, v[7]);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Waits until every event queued before the call is written.
     *
     * @param timeout how long to wait at most
     * @return true if everything was written, false on timeout (the database is down)
     * @throws IllegalArgumentException on a null or negative timeout
     */
    public boolean flush(Duration timeout) {
        if (timeout == null || timeout.isNegative()) {
            throw new InvalidArgumentException("timeout must be a non-negative duration");
        }
        try {
            return Native.recorderFlush(handle, timeout.toMillis());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Stops recording after writing what is queued. Idempotent. */
    @Override
    public void close() {
        try {
            Native.recorderClose(handle);
        } finally {
            Reference.reachabilityFence(this);
        }
    }
}
