package io.memwatch;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.lang.ref.WeakReference;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * Watches memory and reports every change: which region, which bytes, old and new value, when,
 * and (protect backend) which thread wrote it.
 *
 * <pre>{@code
 * try (MemoryWatcher watcher = new MemoryWatcher(Backend.PROTECT)) {
 *     ByteBuffer buf = MemoryWatcher.allocatePageAligned(64);
 *     int id = watcher.watch(buf, "counter");
 *     buf.put(3, (byte) 42);
 *     for (ChangeEvent e : watcher.checkChanges()) {
 *         System.out.println(e);   // counter, range [3,1], old 00, new 2a
 *     }
 * }
 * }</pre>
 *
 * <h2>What can be watched</h2>
 * <ul>
 *   <li><b>Direct {@link ByteBuffer}s</b> ({@link #watch(ByteBuffer, String)}): their memory does
 *   not move, so every backend watches them in place. The bytes between the buffer's position and
 *   limit are watched; the watcher keeps the buffer reachable until it is unwatched.</li>
 *   <li><b>{@code byte[]}</b> ({@link #watch(byte[], String)}): the garbage collector moves arrays,
 *   so no address can be watched. Each watched array gets a native mirror; the watcher copies the
 *   array into it every poll interval and before every {@link #checkChanges()}, and the engine's
 *   <em>poll</em> backend diffs the mirror, whatever this watcher's backend. Events for arrays
 *   therefore carry no writer thread, and a value that changes and changes back within one
 *   interval is not seen.</li>
 *   <li><b>Raw addresses</b> ({@link #watch(long, long, String)}), e.g. from the foreign-memory
 *   API or {@link #addressOf(ByteBuffer)}: the caller guarantees the memory stays mapped until
 *   it is unwatched.</li>
 * </ul>
 *
 * <h2>Events</h2>
 * Without a callback, events wait for {@link #checkChanges()}. With one
 * ({@link #setCallback(Consumer)}), they are delivered one at a time on this watcher's delivery
 * thread, a daemon thread named {@code memwatch-delivery-N} attached to the JVM, and
 * {@code checkChanges()} waits until every change made before it was delivered. A callback that
 * throws is reported to the error handler ({@link #setCallbackErrorHandler(Consumer)}) and
 * counted in {@link Stats#getCallbackErrors()}; delivery goes on.
 *
 * <h2>Interrupting checkChanges() and exit</h2>
 * A {@code checkChanges()} waiting for a slow callback ends when its thread is interrupted
 * ({@link Thread#interrupt()}): it throws {@link CancellationException} (unchecked, with an
 * {@link InterruptedException} as its cause) and leaves the thread's interrupt status set. No event
 * is lost: the callback still receives every one. At a normal JVM exit a shutdown hook hands the
 * changes made before it to the callbacks of every open watcher, waiting at most
 * {@link #EXIT_FLUSH_TIMEOUT} for all of them together; without a callback, pending events are
 * dropped at exit as at {@link #close()}.
 *
 * <h2>Large values</h2>
 * Events carry whole old and new values only for regions of at most
 * {@link WatcherOptions#maxValueBytes(long) maxValueBytes} bytes. With a value store set
 * ({@link #setValueStore(String, long)}), the values of larger regions go to a MemStream
 * shared-memory store, and events carry their keys ({@link ChangeEvent#getStorageKeyOld()},
 * {@link ChangeEvent#getStorageKeyNew()}), readable with {@link ValueStore} from this or another
 * process.
 *
 * <h2>Threads and lifetime</h2>
 * All methods are thread-safe. {@link #close()} unwatches everything, stops delivery and may be
 * called from inside the callback. A watcher that becomes unreachable without being closed is
 * closed by a {@link Cleaner}, but a callback that refers to its watcher keeps it reachable: close
 * watchers explicitly (try-with-resources).
 *
 * <h2>Errors</h2>
 * Bad arguments throw a subclass of {@link IllegalArgumentException}, one per engine error kind:
 * {@link InvalidArgumentException} (null, empty, out of bounds, a heap buffer for a page backend),
 * {@link UnmappedException}, {@link ReadOnlyException} (memory mapped read-only) and
 * {@link OverlapException}; calls on a closed watcher throw
 * {@link IllegalStateException}; a backend this machine lacks throws
 * {@link UnsupportedOperationException}; failing system calls throw {@link MemWatchException}.
 */
public final class MemoryWatcher implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /**
     * How long the exit hook waits, for all watchers together, for callbacks to get pending changes
     * (the engine's {@code EXIT_FLUSH_TIMEOUT}, which every binding's exit hook uses).
     */
    public static final Duration EXIT_FLUSH_TIMEOUT = engineExitFlushTimeout();

    /** How long one native wait of {@link #checkChanges()} lasts before it looks for an interrupt. */
    private static final long WAIT_SLICE_MS = 10;

    /** Open watchers, for the exit hook. */
    private static final Set<WeakReference<MemoryWatcher>> LIVE = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(MemoryWatcher::flushAtExit, "memwatch-exit-flush"));
    }

    /** The engine's exit bound (loads the native library: it is needed for any watcher anyway). */
    private static Duration engineExitFlushTimeout() {
        NativeLibrary.load();
        return Duration.ofMillis(Native.exitFlushTimeoutMs());
    }

    /** The shutdown hook: pending changes go to the callbacks (EXIT_FLUSH_TIMEOUT in all). */
    private static void flushAtExit() {
        long deadline = System.nanoTime() + EXIT_FLUSH_TIMEOUT.toNanos();
        List<MemoryWatcher> open = new ArrayList<>();
        for (WeakReference<MemoryWatcher> r : LIVE) {
            MemoryWatcher w = r.get();
            if (w != null && !w.closed) {
                open.add(w);
            }
        }
        for (MemoryWatcher w : open) {
            long leftMs = (deadline - System.nanoTime()) / 1_000_000;
            if (leftMs <= 0) {
                break;
            }
            try {
                // A close() meanwhile is fine: the native side then returns at once.
                Native.flush(w.handle, leftMs);
                Reference.reachabilityFence(w);
            } catch (RuntimeException e) {
                // A watcher that cannot flush must not keep the others from it.
            }
        }
    }

    private final long handle;
    private final WatcherOptions options;
    private final Cleaner.Cleanable cleanable;
    private final Map<Integer, Object> keepAlive = new ConcurrentHashMap<>();
    private final AtomicReference<Consumer<Throwable>> errorHandler =
            new AtomicReference<>(MemoryWatcher::printCallbackError);
    private final Object lifecycle = new Object();
    private volatile boolean closed;
    private volatile String valueStoreName;

    /** Creates a watcher with the default options (backend {@link Backend#AUTO}). */
    public MemoryWatcher() {
        this(new WatcherOptions());
    }

    /**
     * Creates a watcher with the given backend and default options otherwise.
     *
     * @param backend the detection backend
     * @throws UnsupportedOperationException if the backend is not available here
     */
    public MemoryWatcher(Backend backend) {
        this(new WatcherOptions().backend(Objects.requireNonNull(backend, "backend")));
    }

    /**
     * Creates a watcher.
     *
     * @param options the settings; later changes to the object do not affect this watcher
     * @throws IllegalArgumentException if an option is invalid
     * @throws UnsupportedOperationException if the backend is not available here
     */
    public MemoryWatcher(WatcherOptions options) {
        if (options == null) {
            throw new InvalidArgumentException("options must not be null");
        }
        NativeLibrary.load();
        this.options = copy(options);
        long h = Native.create(options.getBackend().getName(), options.getWritableWindow().toNanos(),
                options.getPollInterval().toNanos(), options.getMaxValueBytes(), options.getPreviewBytes(),
                options.getRingCapacity(), options.getSnapshots(), options.getLocateWriters(),
                options.getStackDepth());
        this.handle = h;
        WeakReference<MemoryWatcher> self = new WeakReference<>(this);
        LIVE.add(self);
        this.cleanable = CLEANER.register(this, () -> {
            LIVE.remove(self);
            Native.destroy(h);
        });
    }

    /**
     * The operating system's page size in bytes.
     *
     * @return the page size
     */
    public static int pageSize() {
        NativeLibrary.load();
        return Native.pageSize();
    }

    /**
     * The native address of a direct buffer's first byte (not of its position).
     *
     * @param directBuffer a direct buffer
     * @return its address
     * @throws IllegalArgumentException if the buffer is null or not direct
     */
    public static long addressOf(ByteBuffer directBuffer) {
        if (directBuffer == null) {
            throw new InvalidArgumentException("buffer must not be null");
        }
        if (!directBuffer.isDirect()) {
            throw new InvalidArgumentException("a heap ByteBuffer has no stable native address");
        }
        NativeLibrary.load();
        return Native.directAddress(directBuffer);
    }

    /**
     * Allocates a direct buffer of {@code size} bytes that starts on a page boundary and whose
     * pages hold nothing else. Watching such a buffer with the protect backend makes only writes
     * to it fault; a plain {@link ByteBuffer#allocateDirect(int)} buffer shares its first and last
     * pages with other native allocations, which then fault too (they are not reported, only
     * slower) and which system calls cannot write while they are protected.
     *
     * @param size the capacity in bytes, at least 1
     * @return a zero-filled direct buffer with position 0 and limit {@code size}
     * @throws IllegalArgumentException if size is not positive
     */
    public static ByteBuffer allocatePageAligned(int size) {
        if (size <= 0) {
            throw new InvalidArgumentException("size must be positive: " + size);
        }
        int page = pageSize();
        long rounded = ((long) size + page - 1) / page * page;
        if (rounded + page > Integer.MAX_VALUE) {
            throw new InvalidArgumentException("size too large for one ByteBuffer: " + size);
        }
        ByteBuffer raw = ByteBuffer.allocateDirect((int) (rounded + page));
        // The slice keeps `raw` (and so its memory) reachable.
        return raw.alignedSlice(page).slice(0, size);
    }

    /**
     * Watches the bytes between a direct buffer's position and limit.
     *
     * @param buffer a writable direct buffer (or, with backend {@link Backend#POLL} only, a
     *               writable heap buffer, which is watched like its backing array)
     * @param name   the variable name reported in events
     * @return the region id, for {@link #unwatch(int)}
     * @throws IllegalArgumentException on a null, read-only, empty or (page backends) heap buffer,
     *                                  a null name, or a range overlapping a watched region
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(ByteBuffer buffer, String name) {
        return watch(buffer, name, null);
    }

    /**
     * Watches the bytes between a direct buffer's position and limit, with metadata.
     *
     * @param buffer   see {@link #watch(ByteBuffer, String)}
     * @param name     the variable name reported in events
     * @param metadata free text copied into every event of this region, or null
     * @return the region id
     * @throws IllegalArgumentException see {@link #watch(ByteBuffer, String)}
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(ByteBuffer buffer, String name, String metadata) {
        if (buffer == null) {
            throw new InvalidArgumentException("buffer must not be null");
        }
        requireName(name);
        if (buffer.isReadOnly()) {
            throw new InvalidArgumentException("read-only buffer: it cannot be written through this view, "
                    + "so watch the writable buffer it was made from");
        }
        if (!buffer.isDirect()) {
            if (options.getBackend() != Backend.POLL) {
                throw new InvalidArgumentException("a heap ByteBuffer cannot be watched by backend "
                        + options.getBackend().getName() + ": the JVM moves its memory. Use a direct buffer "
                        + "(ByteBuffer.allocateDirect or MemoryWatcher.allocatePageAligned), watch(byte[]), "
                        + "or a watcher with backend poll");
            }
            int id = watch(buffer.array(), buffer.arrayOffset() + buffer.position(), buffer.remaining(), name,
                    metadata);
            keepAlive.put(id, buffer);
            return id;
        }
        if (!buffer.hasRemaining()) {
            throw new InvalidArgumentException("buffer has no bytes between position and limit: nothing to watch");
        }
        synchronized (lifecycle) {
            requireOpen();
            try {
                int id = Native.watchBuffer(handle, buffer, buffer.position(), buffer.remaining(), name, metadata);
                keepAlive.put(id, buffer);
                return id;
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Watches a whole {@code byte[]}. The array is polled (see the class documentation): changes
     * are seen at the next poll interval or {@link #checkChanges()}, without a writer thread.
     *
     * @param array a non-empty array
     * @param name  the variable name reported in events
     * @return the region id
     * @throws IllegalArgumentException on a null or empty array or a null name
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(byte[] array, String name) {
        return watch(array, name, null);
    }

    /**
     * Watches a whole {@code byte[]}, with metadata.
     *
     * @param array    a non-empty array
     * @param name     the variable name reported in events
     * @param metadata free text copied into every event of this region, or null
     * @return the region id
     * @throws IllegalArgumentException on a null or empty array or a null name
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(byte[] array, String name, String metadata) {
        if (array == null) {
            throw new InvalidArgumentException("array must not be null");
        }
        return watch(array, 0, array.length, name, metadata);
    }

    /**
     * Watches {@code length} bytes of a {@code byte[]} from {@code offset}. Several regions may
     * watch parts of one array; they must not overlap.
     *
     * @param array    the array
     * @param offset   index of the first watched byte
     * @param length   number of watched bytes, at least 1
     * @param name     the variable name reported in events
     * @param metadata free text copied into every event of this region, or null
     * @return the region id
     * @throws IllegalArgumentException on a null array or name, a range outside the array or
     *                                  of length 0, or a range overlapping a watched region
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(byte[] array, int offset, int length, String name, String metadata) {
        if (array == null) {
            throw new InvalidArgumentException("array must not be null");
        }
        requireName(name);
        if (length <= 0) {
            throw new InvalidArgumentException("length must be at least 1, got " + length
                    + (array.length == 0 ? " (the array is empty)" : ""));
        }
        if (offset < 0 || offset > array.length - length) {
            throw new InvalidArgumentException("range [" + offset + ", " + ((long) offset + length)
                    + ") is outside the array of length " + array.length);
        }
        synchronized (lifecycle) {
            requireOpen();
            try {
                return Native.watchArray(handle, array, offset, length, name, metadata);
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Watches native memory at an address.
     *
     * <p>The caller guarantees that {@code [address, address + size)} stays mapped until the region
     * is unwatched or the watcher is closed; memwatch checks that it is mapped and writable now.
     *
     * @param address the first byte
     * @param size    number of bytes, at least 1
     * @param name    the variable name reported in events
     * @return the region id
     * @throws IllegalArgumentException on address 0, a size below 1, a null name, memory that is
     *                                  not mapped or read-only, or an overlap with a watched region
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(long address, long size, String name) {
        return watch(address, size, name, null);
    }

    /**
     * Watches native memory at an address, with metadata. See {@link #watch(long, long, String)}.
     *
     * @param address  the first byte
     * @param size     number of bytes, at least 1
     * @param name     the variable name reported in events
     * @param metadata free text copied into every event of this region, or null
     * @return the region id
     * @throws IllegalArgumentException see {@link #watch(long, long, String)}
     * @throws IllegalStateException    if the watcher is closed
     */
    public int watch(long address, long size, String name, String metadata) {
        requireName(name);
        if (address == 0) {
            throw new InvalidArgumentException("address must not be 0 (null)");
        }
        if (size <= 0) {
            throw new InvalidArgumentException("size must be at least 1, got " + size);
        }
        synchronized (lifecycle) {
            requireOpen();
            try {
                return Native.watchAddress(handle, address, size, name, metadata);
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Stops watching a region. Its memory may be freed afterwards.
     *
     * @param regionId an id returned by {@code watch}
     * @return true if the region was watched, false if the id is unknown or already unwatched
     * @throws IllegalStateException if the watcher is closed
     */
    public boolean unwatch(int regionId) {
        synchronized (lifecycle) {
            requireOpen();
            try {
                boolean removed = Native.unwatch(handle, regionId);
                if (removed) {
                    keepAlive.remove(regionId);
                }
                return removed;
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Sets the callback that receives every event on the delivery thread, or clears it
     * ({@code null}): events then wait for {@link #checkChanges()}. Events already detected but not
     * yet delivered go to the new callback (or to {@code checkChanges()} after clearing).
     *
     * @param callback the callback, or null
     * @throws IllegalStateException if the watcher is closed
     */
    public void setCallback(Consumer<ChangeEvent> callback) {
        requireOpen();
        try {
            Native.setCallback(handle, callback == null ? null : new CallbackDispatcher(callback, errorHandler));
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Sets what happens to an exception thrown by the callback (after it is counted in
     * {@link Stats#getCallbackErrors()}). The default prints it to {@code System.err}.
     *
     * @param handler the handler; null restores the default
     */
    public void setCallbackErrorHandler(Consumer<Throwable> handler) {
        errorHandler.set(handler == null ? MemoryWatcher::printCallbackError : handler);
    }

    /**
     * Records every change event of this watcher (callback or {@link #checkChanges()} alike,
     * {@code byte[]} regions included) into a database: a file path or {@code sqlite:PATH}
     * (SQLite, WAL mode) or {@code postgresql://user@host:port/db}. The tables memwatch_recordings,
     * memwatch_events and memwatch_losses are created if missing (schema in
     * crates/memwatch-record/README.md). Never blocks the watched program: a bounded queue feeds
     * the recorder's own thread; events that do not fit are counted
     * ({@link RecorderStats#dropped()}) and written to memwatch_losses. Closing the watcher ends
     * the recording once its queue is written.
     *
     * @param url where to record
     * @return the running recorder
     * @throws IllegalArgumentException on a null URL or one that is neither SQLite nor PostgreSQL
     * @throws IllegalStateException    if the watcher is closed
     * @throws MemWatchException        if the database cannot be opened or reached
     */
    public Recorder recordTo(String url) {
        if (url == null) {
            throw new InvalidArgumentException("url must not be null");
        }
        synchronized (lifecycle) {
            requireOpen();
            try {
                return new Recorder(Native.recordTo(handle, url));
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Sends the whole values of regions larger than {@code maxValueBytes} to the MemStream store
     * {@code storeName}, created with {@code capacityBytes} and LRU eviction if it does not exist
     * (an existing store keeps its own capacity and full policy). From then on, each event of such
     * a region ({@code byte[]} regions included) carries {@link ChangeEvent#getStorageKeyNew()},
     * the key of its new value, and {@link ChangeEvent#getStorageKeyOld()}, the key of its old
     * value while the store still holds it; {@link ChangeEvent#getOldValue()} and
     * {@link ChangeEvent#getNewValue()} stay null. The current value of every large region
     * already watched is stored right away, so the next event's old key resolves. Read values
     * with {@link ValueStore#open(String)} and {@link ValueStore#get(String)}, in this process
     * or another one. Replaces a store set before.
     *
     * <p>Keys ({@code memwatch/4/<regionId>/<epoch>}) name no process and region ids are per
     * process: give each watching process a store of its own. Values the store cannot hold (or
     * evicted ones) leave the key null (or the old key null). The store's name stays until
     * {@link ValueStore#unlink(String)}.
     *
     * @param storeName     the store: 1 to 200 characters from {@code [A-Za-z0-9._-]}
     * @param capacityBytes the data capacity when the store is created
     * @throws IllegalArgumentException on a null or invalid name, a capacity out of range, or a
     *                                  segment of that name that is not a usable store
     * @throws IllegalStateException    if the watcher is closed
     * @throws MemWatchException        if the shared memory cannot be created or mapped
     */
    public void setValueStore(String storeName, long capacityBytes) {
        if (storeName == null) {
            throw new InvalidArgumentException("storeName must not be null (clearValueStore() stops the store)");
        }
        if (capacityBytes <= 0) {
            throw new InvalidArgumentException("capacityBytes must be positive, got " + capacityBytes);
        }
        synchronized (lifecycle) {
            requireOpen();
            try {
                Native.setValueStore(handle, storeName, capacityBytes);
                valueStoreName = storeName;
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Stops sending large values to a store: later events of large regions carry no storage
     * keys (and still no values). The store and the values in it stay; does nothing if no store
     * is set.
     *
     * @throws IllegalStateException if the watcher is closed
     */
    public void clearValueStore() {
        synchronized (lifecycle) {
            requireOpen();
            try {
                Native.setValueStore(handle, null, 0);
                valueStoreName = null;
            } finally {
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * The name of the value store set with {@link #setValueStore(String, long)}.
     *
     * @return the store name, or null if none is set (or the watcher is closed)
     */
    public String getValueStoreName() {
        return closed ? null : valueStoreName;
    }

    /**
     * Detects changes now. Every write made before this call is in the result or was already
     * delivered to the callback. With a callback set, the events go to it, this call waits until
     * they were delivered and returns an empty list; called from inside the callback it returns
     * the events instead of waiting for itself.
     *
     * <p>While it waits for the callback, interrupting the calling thread ends the wait: see the
     * class documentation.
     *
     * @return the new events in detection order (ascending {@link ChangeEvent#getSeq()})
     * @throws IllegalStateException if the watcher is closed
     * @throws CancellationException if the thread was interrupted while waiting for the callback
     *     (the interrupt status stays set; the callback still gets every event)
     */
    public List<ChangeEvent> checkChanges() {
        requireOpen();
        try {
            long[] fence = {0};
            while (true) {
                ChangeEvent[] events = Native.checkChanges(handle, WAIT_SLICE_MS, fence);
                if (events != null) {
                    return List.of(events);
                }
                if (Thread.currentThread().isInterrupted()) {
                    CancellationException e = new CancellationException(
                            "checkChanges() interrupted while waiting for the callback");
                    e.initCause(new InterruptedException());
                    throw e;
                }
            }
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The watcher's statistics.
     *
     * @return a snapshot of the counters
     * @throws IllegalStateException if the watcher is closed
     */
    public Stats getStats() {
        requireOpen();
        try {
            return Native.stats(handle);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The options this watcher was created with.
     *
     * @return a copy of the options
     */
    public WatcherOptions getOptions() {
        return copy(options);
    }

    /**
     * Whether {@link #close()} was called.
     *
     * @return true once closed
     */
    public boolean isClosed() {
        return closed;
    }

    /**
     * Unwatches everything, drops undelivered events and stops the delivery thread. Idempotent.
     * Waits for a callback that is running on another thread to return (so no callback runs after
     * this returns); called from inside the callback, it returns at once and the delivery thread
     * ends after the callback.
     */
    @Override
    public void close() {
        synchronized (lifecycle) {
            if (closed) {
                return;
            }
            closed = true;
        }
        try {
            Native.close(handle);
        } finally {
            keepAlive.clear();
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Describes the watcher.
     *
     * @return backend and state
     */
    @Override
    public String toString() {
        return "MemoryWatcher{backend=" + options.getBackend().getName() + (closed ? ", closed" : "") + "}";
    }

    private static void printCallbackError(Throwable t) {
        System.err.println("memwatch: the change callback threw; delivery continues:");
        t.printStackTrace();
    }

    private void requireOpen() {
        if (closed) {
            throw new IllegalStateException("watcher is closed");
        }
    }

    private static void requireName(String name) {
        if (name == null) {
            throw new InvalidArgumentException("name must not be null");
        }
    }

    private static WatcherOptions copy(WatcherOptions o) {
        return new WatcherOptions().backend(o.getBackend()).writableWindow(o.getWritableWindow())
                .pollInterval(o.getPollInterval()).maxValueBytes(o.getMaxValueBytes())
                .previewBytes(o.getPreviewBytes()).ringCapacity(o.getRingCapacity()).snapshots(o.getSnapshots())
                .locateWriters(o.getLocateWriters()).stackDepth(o.getStackDepth());
    }
}
