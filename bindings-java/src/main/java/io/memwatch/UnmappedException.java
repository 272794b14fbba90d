package io.memwatch;

/**
 * The memory to watch is not mapped in this process (engine error kind {@code unmapped}).
 *
 * <p>Extends {@link IllegalArgumentException}, so code catching that keeps working.
 */
public class UnmappedException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message what was wrong with the argument
     */
    public UnmappedException(String message) {
        super(message);
    }
}
