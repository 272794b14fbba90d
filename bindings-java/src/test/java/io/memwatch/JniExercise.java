package io.memwatch;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A child-JVM program for {@link JniCheckTest}: goes through every native entry point, including
 * the failure paths that throw from native code, then leaves one watcher with a callback open and
 * returns from main, so the JVM must exit with the delivery thread still attached (as a daemon).
 * Prints {@value #DONE} when everything behaved.
 */
public final class JniExercise {
    /** Printed last on success. */
    public static final String DONE = "JNI-EXERCISE-DONE";

    private JniExercise() {
    }

    private static void expect(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private static void expectThrows(Class<? extends Throwable> type, Runnable r) {
        try {
            r.run();
        } catch (Throwable t) {
            expect(type.isInstance(t), "expected " + type.getSimpleName() + " but got " + t);
            return;
        }
        throw new AssertionError("expected " + type.getSimpleName());
    }

    /**
     * Runs the exercise.
     *
     * @param args optionally, how many milliseconds to linger before returning
     */
    public static void main(String[] args) {
        for (Backend backend : new Backend[] {Backend.PROTECT, Backend.POLL}) {
            try (MemoryWatcher w = new MemoryWatcher(new WatcherOptions().backend(backend).maxValueBytes(16)
                    .previewBytes(4))) {
                ByteBuffer buf = MemoryWatcher.allocatePageAligned(64);
                byte[] array = new byte[32];
                int d = w.watch(buf.slice(0, 8), "small", "meta");
                int big = w.watch(buf.slice(8, 32), "big");
                int a = w.watch(array, "array");
                int raw = w.watch(MemoryWatcher.addressOf(buf) + 48, 8, "raw");
                expectThrows(IllegalArgumentException.class, () -> w.watch(buf.slice(0, 4), "overlap"));
                expectThrows(IllegalArgumentException.class, () -> w.watch(MemoryWatcher.pageSize(), 8, "unmapped"));
                expectThrows(IllegalArgumentException.class, () -> w.watch(array, 0, 4, "overlap", null));
                buf.put(1, (byte) 1);
                buf.put(9, (byte) 2);
                buf.put(50, (byte) 3);
                array[3] = 4;
                List<ChangeEvent> events = w.checkChanges();
                expect(events.size() == 4, "4 events, got " + events);
                for (ChangeEvent e : events) {
                    expect(e.toString().contains(e.getVariableName()), "toString");
                    if (e.getRegionId() == big) {
                        expect(e.getOldValue() == null && e.getNewValue() == null, "big: values absent");
                    }
                }
                List<ChangeEvent> seen = new CopyOnWriteArrayList<>();
                w.setCallbackErrorHandler(t -> { });
                w.setCallback(e -> {
                    seen.add(e);
                    throw new IllegalStateException("thrown on purpose");
                });
                buf.put(2, (byte) 5);
                array[4] = 6;
                w.checkChanges();
                expect(seen.size() == 2, "2 delivered, got " + seen);
                expect(w.getStats().getCallbackErrors() == 2, "2 callback errors");
                w.setCallback(null);
                expect(w.unwatch(d) && w.unwatch(a) && w.unwatch(raw) && w.unwatch(big), "unwatch");
                expect(!w.unwatch(d), "second unwatch is false");
                expect(w.getStats().getRegions() == 0, "no regions left");
            }
        }
        // Left open on purpose: its daemon delivery thread must not keep the JVM alive.
        MemoryWatcher open = new MemoryWatcher(Backend.PROTECT);
        ByteBuffer kept = MemoryWatcher.allocatePageAligned(16);
        open.watch(kept, "kept");
        open.watch(new byte[8], "array");
        open.setCallback(e -> { });
        kept.put(0, (byte) 1);
        open.checkChanges();
        // Optionally stay alive a while (args[0] ms) so HotSpot's periodic -Xcheck:jni signal
        // handler check runs while memwatch's handler is installed.
        if (args.length > 0) {
            try {
                Thread.sleep(Long.parseLong(args[0]));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        System.out.println(DONE);
    }
}
