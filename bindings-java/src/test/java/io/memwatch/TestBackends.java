package io.memwatch;

import org.junit.jupiter.api.Assumptions;

/** Creates watchers for parameterized tests; a backend this machine lacks skips (never passes). */
final class TestBackends {
    private TestBackends() {
    }

    static MemoryWatcher open(Backend backend) {
        return open(new WatcherOptions().backend(backend));
    }

    static MemoryWatcher open(WatcherOptions options) {
        try {
            return new MemoryWatcher(options);
        } catch (UnsupportedOperationException e) {
            Assumptions.abort("backend " + options.getBackend().getName() + " not available here: " + e.getMessage());
            throw e;
        }
    }
}
