package io.memwatch;

/**
 * The range overlaps a region this watcher already watches (engine error kind {@code overlap}).
 *
 * <p>Extends {@link IllegalArgumentException}, so code catching that keeps working.
 */
public class OverlapException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message what was wrong with the argument
     */
    public OverlapException(String message) {
        super(message);
    }
}
