package io.memwatch;

/**
 * How a {@link MemoryWatcher} detects writes to the memory it watches.
 *
 * <p>Whatever the backend, {@code byte[]} regions are always watched by polling (see
 * {@link MemoryWatcher#watch(byte[], String)}), because the JVM moves arrays.
 */
public enum Backend {
    /**
     * The best mechanism available: {@code writewatch} where the kernel has it, else
     * {@code protect}; {@link Stats#getBackend()} tells which one, {@link Stats#getBackendReason()}
     * why a better one was not used.
     */
    AUTO("auto"),
    /**
     * Page protection ({@code mprotect}) and a SIGSEGV handler. Reports the writing thread and
     * instruction pointer. A system call that writes into a watched page (for example
     * {@code FileChannel.read} into a watched direct buffer) fails with {@code EFAULT}, which Java
     * reports as an {@link java.io.IOException} "Bad address".
     */
    PROTECT("protect"),
    /**
     * userfaultfd asynchronous write protection and {@code PAGEMAP_SCAN} (Linux 6.7+). No signal
     * handler at all, so nothing to chain with the JVM's; system calls writing into watched memory
     * succeed and are reported. Events carry no writer thread. Where the kernel lacks it, creating
     * a watcher with it throws {@link UnsupportedOperationException} with the reason.
     */
    WRITEWATCH("writewatch"),
    /** Snapshot and hash every poll interval, and synchronously in {@link MemoryWatcher#checkChanges()}. Works on any memory. */
    POLL("poll");

    private final String wireName;

    Backend(String wireName) {
        this.wireName = wireName;
    }

    /**
     * The lower-case name every memwatch binding uses for this backend.
     *
     * @return {@code "auto"}, {@code "protect"}, {@code "writewatch"} or {@code "poll"}
     */
    public String getName() {
        return wireName;
    }

    /**
     * Parses a backend name as returned by {@link #getName()}.
     *
     * @param name the lower-case backend name
     * @return the backend
     * @throws IllegalArgumentException if the name is unknown or null
     */
    public static Backend fromName(String name) {
        for (Backend b : values()) {
            if (b.wireName.equals(name)) {
                return b;
            }
        }
        throw new InvalidArgumentException(
                "unknown backend " + (name == null ? "null" : '"' + name + '"')
                        + ": expected \"auto\", \"protect\", \"writewatch\" or \"poll\"");
    }
}
