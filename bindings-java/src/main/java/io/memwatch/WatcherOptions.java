package io.memwatch;

import java.time.Duration;
import java.util.Objects;

/**
 * Settings of a {@link MemoryWatcher}. A fresh instance holds the documented defaults; setters
 * return {@code this} so they chain:
 *
 * <pre>{@code
 * new MemoryWatcher(new WatcherOptions().backend(Backend.POLL).pollInterval(Duration.ofMillis(20)))
 * }</pre>
 */
public final class WatcherOptions {
    private Backend backend = Backend.AUTO;
    private Duration writableWindow = Duration.ofNanos(Defaults.get("writableWindowNs"));
    private Duration pollInterval = Duration.ofNanos(Defaults.get("pollIntervalNs"));
    private long maxValueBytes = Defaults.get("maxValueBytes");
    private long previewBytes = Defaults.get("previewBytes");
    private long ringCapacity = Defaults.get("ringCapacity");
    private boolean snapshots = Defaults.get("snapshots") != 0;
    private boolean locateWriters = Defaults.get("locateWriters") != 0;
    private int stackDepth = (int) Defaults.get("stackDepth");

    /** The engine's defaults, asked from the native library (the one place they are written). */
    private static final class Defaults {
        static {
            NativeLibrary.load();
        }

        static long get(String name) {
            return Native.defaultOption(name);
        }
    }

    /** Creates options holding the engine's defaults. */
    public WatcherOptions() {
    }

    /**
     * Detection mechanism; default {@link Backend#AUTO}.
     *
     * @param backend the backend
     * @return this
     */
    public WatcherOptions backend(Backend backend) {
        this.backend = Objects.requireNonNull(backend, "backend");
        return this;
    }

    /**
     * How long a page stays writable after its first write before it is re-protected and diffed
     * (protect backend); writes inside the window coalesce into one event. Default 5 ms.
     *
     * @param window a non-negative duration
     * @return this
     */
    public WatcherOptions writableWindow(Duration window) {
        this.writableWindow = nonNegative(window, "writableWindow");
        return this;
    }

    /**
     * How often the poll backend, and the {@code byte[]} mirrors of every watcher, are checked.
     * Default 100 ms.
     *
     * @param interval a positive duration
     * @return this
     */
    public WatcherOptions pollInterval(Duration interval) {
        nonNegative(interval, "pollInterval");
        if (interval.isZero()) {
            throw new InvalidArgumentException("pollInterval must be positive");
        }
        this.pollInterval = interval;
        return this;
    }

    /**
     * Events carry the whole old and new value when the region is at most this many bytes.
     * Default 4096.
     *
     * @param bytes a non-negative size
     * @return this
     */
    public WatcherOptions maxValueBytes(long bytes) {
        this.maxValueBytes = nonNegative(bytes, "maxValueBytes");
        return this;
    }

    /**
     * Bytes of old/new preview carried in every event. Default 256.
     *
     * @param bytes a non-negative size
     * @return this
     */
    public WatcherOptions previewBytes(long bytes) {
        this.previewBytes = nonNegative(bytes, "previewBytes");
        return this;
    }

    /**
     * Capacity of the process-wide fault ring, used when the engine starts. Default 32768.
     *
     * @param entries a non-negative number of entries
     * @return this
     */
    public WatcherOptions ringCapacity(long entries) {
        this.ringCapacity = nonNegative(entries, "ringCapacity");
        return this;
    }

    /**
     * Keep a copy of each region to report old values and exact changed ranges. Default true.
     *
     * @param enabled whether to keep snapshots
     * @return this
     */
    public WatcherOptions snapshots(boolean enabled) {
        this.snapshots = enabled;
        return this;
    }

    /**
     * Report which thread, method, file and line wrote ({@link ChangeEvent#where()}): Java frames
     * (class, method, source file, line) for writes from Java code, then native frames. Only the
     * first write to a page in its writable window faults, so only it is located. Needs the
     * {@link Backend#PROTECT} backend ({@link Backend#AUTO} picks it); other backends are refused
     * with {@link IllegalArgumentException}. Default false.
     *
     * @param enabled whether to locate writers
     * @return this
     */
    public WatcherOptions locateWriters(boolean enabled) {
        this.locateWriters = enabled;
        return this;
    }

    /**
     * How many frames {@link Where#stack()} keeps of each kind (Java, native) when
     * {@link #locateWriters(boolean)} is on: 1 to 32, checked when the watcher is created. Default 8.
     *
     * @param depth frames per stack
     * @return this
     */
    public WatcherOptions stackDepth(int depth) {
        this.stackDepth = depth;
        return this;
    }

    /**
     * Whether writers are located.
     *
     * @return true if located
     */
    public boolean getLocateWriters() {
        return locateWriters;
    }

    /**
     * The configured stack depth.
     *
     * @return frames per stack
     */
    public int getStackDepth() {
        return stackDepth;
    }

    /**
     * The configured backend.
     *
     * @return the backend
     */
    public Backend getBackend() {
        return backend;
    }

    /**
     * The configured writable window.
     *
     * @return the window
     */
    public Duration getWritableWindow() {
        return writableWindow;
    }

    /**
     * The configured poll interval.
     *
     * @return the interval
     */
    public Duration getPollInterval() {
        return pollInterval;
    }

    /**
     * The configured maximum size of whole values in events.
     *
     * @return bytes
     */
    public long getMaxValueBytes() {
        return maxValueBytes;
    }

    /**
     * The configured preview size.
     *
     * @return bytes
     */
    public long getPreviewBytes() {
        return previewBytes;
    }

    /**
     * The configured fault ring capacity.
     *
     * @return entries
     */
    public long getRingCapacity() {
        return ringCapacity;
    }

    /**
     * Whether snapshots are kept.
     *
     * @return true if snapshots are on
     */
    public boolean getSnapshots() {
        return snapshots;
    }

    private static Duration nonNegative(Duration d, String what) {
        Objects.requireNonNull(d, what);
        if (d.isNegative()) {
            throw new InvalidArgumentException(what + " must not be negative: " + d);
        }
        return d;
    }

    private static long nonNegative(long v, String what) {
        if (v < 0) {
            throw new InvalidArgumentException(what + " must not be negative: " + v);
        }
        return v;
    }
}
