package io.memwatch;

/**
 * An operating-system or internal failure of memwatch that is not the caller's fault.
 *
 * <p>Bad arguments throw a subclass of {@link IllegalArgumentException} ({@link
 * InvalidArgumentException}, {@link UnmappedException}, {@link ReadOnlyException}, {@link
 * OverlapException}), calls on a closed watcher throw
 * {@link IllegalStateException} and unavailable backends throw
 * {@link UnsupportedOperationException}; everything else is a {@code MemWatchException}.
 */
public class MemWatchException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message what failed and why
     */
    public MemWatchException(String message) {
        super(message);
    }
}
