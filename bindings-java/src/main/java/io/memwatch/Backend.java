package io.memwatch;

/**
 * How a {@link MemoryWatcher} detects writes to the memory it watches.
 *
 * <p>Whatever the backend, {@code byte[]} regions are always watched by polling (see
 * {@link MemoryWatcher#watch(byte[], String)}), because the JVM moves arrays.
 */
public enum Backend {
    /** The best mechanism available: {@code writewatch} where the kernel has it (once implemented), else {@code protect}, else {@code poll}. */
    AUTO("auto"),
    /**
     * Page protection ({@code mprotect}) and a SIGSEGV handler. Reports the writing thread and
     * instruction pointer. A system call that writes into a watched page (for example
     * {@code FileChannel.read} into a watched direct buffer) fails with {@code EFAULT}, which Java
     * reports as an {@link java.io.IOException} "Bad address".
     */
    PROTECT("protect"),
    /** userfaultfd write protection (Linux 6.7+). Not yet available: creating a watcher with it throws {@link UnsupportedOperationException}. */
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
        throw new IllegalArgumentException(
                "unknown backend " + (name == null ? "null" : '"' + name + '"')
                        + ": expected \"auto\", \"protect\", \"writewatch\" or \"poll\"");
    }
}
