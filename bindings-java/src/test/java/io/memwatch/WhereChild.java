package io.memwatch;

import java.nio.ByteBuffer;
import java.util.List;

/**
 * Child JVM of {@link WhereJitTest}: warms up a nested direct-buffer write (30 000 calls, so it is
 * compiled when the JVM compiles at all), then makes it once more on a watched page and prints
 * the lines the JVM itself reports next to the write and what {@link ChangeEvent#where()} says:
 * <pre>
 * expected F:L F:L F:L     hotStore, hotCaller, main (Throwable.getStackTrace)
 * where F:L                the named frame
 * stack F:L ...            the Java frames from the named one on
 * </pre>
 */
public final class WhereChild {
    static int storeLine;
    static int callerLine;

    private WhereChild() {
    }

    static void hotStore(ByteBuffer b, int index, byte v) {
        if (storeLine == 0) {
            storeLine = new Throwable().getStackTrace()[0].getLineNumber() + 2;
        }
        b.put(index, v);
    }

    static void hotCaller(ByteBuffer b, int index, byte v) {
        if (callerLine == 0) {
            callerLine = new Throwable().getStackTrace()[0].getLineNumber() + 2;
        }
        hotStore(b, index, v);
    }

    /**
     * Runs the check.
     *
     * @param args unused
     */
    public static void main(String[] args) {
        ByteBuffer warm = ByteBuffer.allocateDirect(64);
        for (int i = 0; i < 30_000; i++) {
            hotCaller(warm, i & 63, (byte) i);
        }
        String me = WhereChild.class.getName();
        try (MemoryWatcher w = new MemoryWatcher(new WatcherOptions().locateWriters(true).stackDepth(16))) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(MemoryWatcher.pageSize());
            w.watch(buf, "buf");
            int mainLine = new Throwable().getStackTrace()[0].getLineNumber() + 1;
            hotCaller(buf, 3, (byte) 9);
            List<ChangeEvent> events = w.checkChanges();
            if (events.size() != 1) {
                throw new AssertionError("events: " + events);
            }
            Where wh = events.get(0).where();
            System.out.println("expected " + me + ".hotStore:" + storeLine + " " + me + ".hotCaller:" + callerLine
                    + " " + me + ".main:" + mainLine);
            System.out.println("where " + wh.function() + ":" + wh.line());
            StringBuilder sb = new StringBuilder("stack");
            boolean on = false;
            for (Frame f : wh.javaStack()) {
                on |= f.function().equals(wh.function());
                if (on) {
                    sb.append(' ').append(f.function()).append(':').append(f.line());
                }
            }
            System.out.println(sb);
            System.out.println("reason " + wh.noJavaFramesReason());
        }
    }
}
