package io.memwatch;

/**
 * A bad argument (engine error kind {@code invalid_argument}): null, zero length, a range
 * outside its buffer, an option out of range, an unknown name.
 *
 * <p>Extends {@link IllegalArgumentException}, so code catching that keeps working.
 */
public class InvalidArgumentException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message what was wrong with the argument
     */
    public InvalidArgumentException(String message) {
        super(message);
    }
}
