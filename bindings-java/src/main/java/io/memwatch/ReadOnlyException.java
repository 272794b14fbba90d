package io.memwatch;

/**
 * The memory to watch is mapped read-only (engine error kind {@code read_only}).
 *
 * <p>Extends {@link IllegalArgumentException}, so code catching that keeps working.
 */
public class ReadOnlyException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message what was wrong with the argument
     */
    public ReadOnlyException(String message) {
        super(message);
    }
}
