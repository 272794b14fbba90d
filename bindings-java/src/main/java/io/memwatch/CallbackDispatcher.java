package io.memwatch;

import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * What the native delivery thread calls for each event: runs the user's callback and reports
 * (instead of propagating) anything it throws. Holds no reference to the {@link MemoryWatcher}
 * itself, so an unclosed watcher can still be collected.
 */
final class CallbackDispatcher {
    private final Consumer<ChangeEvent> callback;
    private final AtomicReference<Consumer<Throwable>> errorHandler;

    CallbackDispatcher(Consumer<ChangeEvent> callback, AtomicReference<Consumer<Throwable>> errorHandler) {
        this.callback = callback;
        this.errorHandler = errorHandler;
    }

    /** Called from native code on the delivery thread; returns false if the callback threw. */
    boolean deliver(ChangeEvent event) {
        try {
            callback.accept(event);
            return true;
        } catch (Throwable t) {
            try {
                errorHandler.get().accept(t);
            } catch (Throwable ignored) {
                // An error handler that throws must not take the delivery thread down.
            }
            return false;
        }
    }
}
