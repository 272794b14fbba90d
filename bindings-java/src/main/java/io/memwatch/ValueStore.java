package io.memwatch;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;

/**
 * A read handle on a MemStream store: the crash-safe shared-memory key-value store that holds
 * the values of large regions once a watcher has one ({@link MemoryWatcher#setValueStore}).
 *
 * <pre>{@code
 * try (ValueStore store = ValueStore.open("my-values")) {
 *     byte[] newValue = store.get(event.getStorageKeyNew());   // null once evicted
 * }
 * }</pre>
 *
 * <p>Any process can open the store by name while it exists, and reads never block the watcher.
 * Handles are thread-safe; {@link #close()} waits for running reads. Only reading is offered
 * here: the watcher writes.
 */
public final class ValueStore implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long handle;
    private final String name;
    private final Cleaner.Cleanable cleanable;
    private volatile boolean closed;

    private ValueStore(long handle, String name) {
        this.handle = handle;
        this.name = name;
        this.cleanable = CLEANER.register(this, () -> Native.storeDestroy(handle));
    }

    /**
     * Opens the existing store {@code name}.
     *
     * @param name the store name, as given to {@link MemoryWatcher#setValueStore}
     * @return an open handle; close it
     * @throws IllegalArgumentException if the name is null or invalid, no store of that name
     *                                  exists, or the segment of that name is not a usable store
     * @throws MemWatchException        if the shared memory cannot be opened or mapped
     */
    public static ValueStore open(String name) {
        if (name == null) {
            throw new InvalidArgumentException("name must not be null");
        }
        NativeLibrary.load();
        return new ValueStore(Native.storeOpen(name), name);
    }

    /**
     * Removes the store's name. Processes (and watchers) that have it open keep using it; its
     * memory is freed when the last one closes it.
     *
     * @param name the store name
     * @return true if the store existed, false if there was none
     * @throws IllegalArgumentException if the name is null or invalid
     * @throws MemWatchException        if the system refuses (for example, permissions)
     */
    public static boolean unlink(String name) {
        if (name == null) {
            throw new InvalidArgumentException("name must not be null");
        }
        NativeLibrary.load();
        return Native.storeUnlink(name);
    }

    /**
     * A copy of the value stored under {@code key}.
     *
     * @param key a key, such as {@link ChangeEvent#getStorageKeyNew()}
     * @return the value, or null if the store does not hold the key (never stored, or evicted)
     * @throws IllegalArgumentException if the key is null, empty or longer than the store allows
     * @throws IllegalStateException    if this handle is closed
     */
    public byte[] get(String key) {
        if (key == null) {
            throw new InvalidArgumentException("key must not be null");
        }
        if (closed) {
            throw new IllegalStateException("store is closed");
        }
        try {
            return Native.storeGet(handle, key);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The store's name.
     *
     * @return the name given to {@link #open(String)}
     */
    public String getName() {
        return name;
    }

    /**
     * Whether {@link #close()} was called.
     *
     * @return true once closed
     */
    public boolean isClosed() {
        return closed;
    }

    /** Unmaps the store from this process (the store itself stays). Idempotent. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        try {
            Native.storeClose(handle);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Describes the handle.
     *
     * @return the name and state
     */
    @Override
    public String toString() {
        return "ValueStore{" + name + (closed ? ", closed" : "") + "}";
    }
}
