package io.memwatch;

import static io.memwatch.TestSupport.assertOneByteEvent;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * {@link ChangeEvent#where()} with {@code locateWriters}: the Java frame that wrote (class,
 * method, file, line, computed here with {@link Throwable#getStackTrace()}), the caller chain in
 * order, the JDK's frames kept in the stack but not named. {@link WhereJitTest} runs the same
 * checks in child JVMs that are interpreted only ({@code -Xint}) and C2-compiled ({@code -Xbatch}).
 */
class WhereTest {
    private static final String ME = WhereTest.class.getName();
    private static final int PAGE = MemoryWatcher.pageSize();

    /** The line after the caller's line: where the statement after the call sits. */
    static int nextLine() {
        return new Throwable().getStackTrace()[1].getLineNumber() + 1;
    }

    static int storeLine;
    static int middleLine;
    static int outerLine;

    static void store(ByteBuffer b, int index, byte v) {
        storeLine = nextLine();
        b.put(index, v);
    }

    static void middle(ByteBuffer b, int index, byte v) {
        middleLine = nextLine();
        store(b, index, v);
    }

    static void outer(ByteBuffer b, int index, byte v) {
        outerLine = nextLine();
        middle(b, index, v);
    }

    static MemoryWatcher locating(int depth) {
        return new MemoryWatcher(new WatcherOptions().locateWriters(true).stackDepth(depth));
    }

    /** function:line of each frame. */
    static List<String> names(List<Frame> frames) {
        return frames.stream().map(f -> f.function() + ":" + f.line()).toList();
    }

    /** The Java frames from the first one Where names on. */
    static List<Frame> fromUserFrame(Where w) {
        List<Frame> java = w.javaStack();
        for (int i = 0; i < java.size(); i++) {
            if (java.get(i).function().equals(w.function())) {
                return java.subList(i, java.size());
            }
        }
        throw new AssertionError("the named frame " + w.function() + " is not in the stack " + w.stack());
    }

    static boolean isJdk(Frame f) {
        return f.isJava() && (f.function().startsWith("java.") || f.function().startsWith("jdk.")
                || f.function().startsWith("sun."));
    }

    @Test
    void aNestedDirectBufferWriteNamesTheWritingLineAndTheCallerChain() {
        try (MemoryWatcher w = locating(16)) {
            assertEquals(Backend.PROTECT, w.getStats().getBackend());
            assertTrue(w.getStats().getBackendReason().contains("locate_writers"), w.getStats().getBackendReason());
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(PAGE);
            int id = w.watch(buf, "buf");
            int testLine = nextLine();
            outer(buf, 5, (byte) 7);
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            byte[] old = new byte[PAGE];
            byte[] now = old.clone();
            now[5] = 7;
            ChangeEvent e = events.get(0);
            assertOneByteEvent(e, id, "buf", 5, old, now);
            Where wh = e.where();
            assertEquals("", wh.noJavaFramesReason());
            assertEquals(ME + ".store", wh.function());
            assertEquals("WhereTest.java", wh.file());
            assertEquals(storeLine, wh.line());
            assertEquals("java", wh.module());
            assertEquals(TestSupport.currentTid(), wh.threadId().getAsInt());
            assertEquals(e.getFile(), wh.file());
            assertEquals(e.getLine(), wh.line());
            assertEquals(0, wh.unattributedFaults());
            assertEquals(List.of(ME + ".store:" + storeLine, ME + ".middle:" + middleLine,
                    ME + ".outer:" + outerLine, ME + ".aNestedDirectBufferWriteNamesTheWritingLineAndTheCallerChain:" + testLine),
                    names(fromUserFrame(wh).subList(0, 4)));
            // Before the user frame: only the JDK's frames, ByteBuffer.put among them.
            List<Frame> java = wh.javaStack();
            List<Frame> jdk = java.subList(0, java.indexOf(fromUserFrame(wh).get(0)));
            assertTrue(jdk.stream().allMatch(WhereTest::isJdk), "JDK frames first: " + wh.stack());
            assertTrue(jdk.stream().anyMatch(f -> f.function().equals("java.nio.DirectByteBuffer.put")
                    && f.file().equals("DirectByteBuffer.java")), "ByteBuffer.put is in the stack: " + wh.stack());
            // Java frames first (at most stackDepth), then the native ones.
            assertTrue(java.size() <= 16 && java.size() >= 7, wh.stack().toString());
            assertEquals(java, wh.stack().subList(0, java.size()));
            List<Frame> nativeFrames = wh.stack().subList(java.size(), wh.stack().size());
            assertFalse(nativeFrames.isEmpty(), "native frames follow: " + wh.stack());
            assertEquals(wh.faultIp().getAsLong(), nativeFrames.get(0).ip());
            assertTrue(nativeFrames.stream().noneMatch(Frame::isJava));
            assertSame(wh, e.where());
        }
    }

    private static void assertSame(Object a, Object b) {
        assertTrue(a == b, "where() is converted once");
    }

    static int warmLine;

    /**
     * Computes its line once: in C2 code, a write right after the inlined {@code nextLine()} (a
     * Throwable and its stack trace) is named by HotSpot's debug info as nextLine's last line (the
     * store has no debug info of its own; README, Known limits).
     */
    static void warmStore(ByteBuffer b, int index, byte v) {
        if (warmLine == 0) {
            warmLine = nextLine() + 1;
        }
        b.put(index, v);
    }

    @Test
    void theLineStaysRightAfterTheWriteIsWarmedUp() {
        ByteBuffer warm = ByteBuffer.allocateDirect(64);
        for (int i = 0; i < 200_000; i++) {
            warmStore(warm, i & 63, (byte) i);
        }
        try (MemoryWatcher w = locating(8)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(2 * PAGE);
            w.watch(buf, "buf");
            for (int round = 0; round < 2; round++) {
                int callLine = nextLine();
                warmStore(buf, round * PAGE + 1, (byte) (round + 1));
                List<ChangeEvent> events = w.checkChanges();
                assertEquals(1, events.size());
                Where wh = events.get(0).where();
                // Compiled code: HotSpot sometimes has no bytecode index for the store
                // (line 0, README Known limits); the method is always named, and a line,
                // when given, is the store's. WhereJitTest asserts the exact line in C2.
                assertEquals(ME + ".warmStore", wh.function(), wh.stack().toString());
                if (wh.line() != 0) {
                    assertEquals(warmLine, wh.line(), wh.stack().toString());
                }
                assertEquals(ME + ".theLineStaysRightAfterTheWriteIsWarmedUp:" + callLine,
                        names(fromUserFrame(wh)).get(1));
            }
        }
    }

    @Test
    void aVarHandleWriteNamesTheCallingLine() {
        VarHandle ints = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
        try (MemoryWatcher w = locating(16)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(PAGE);
            w.watch(buf, "ints");
            int line = nextLine();
            ints.set(buf, 8, 0x04030201);
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            assertEquals(List.of(new ByteRange(8, 4)), events.get(0).getChangedRanges());
            Where wh = events.get(0).where();
            assertEquals(ME + ".aVarHandleWriteNamesTheCallingLine:" + line, wh.function() + ":" + wh.line(),
                    wh.stack().toString());
        }
    }

    @Test
    void aBulkPutNamesTheCallingLine() {
        byte[] src = new byte[512];
        java.util.Arrays.fill(src, (byte) 3);
        assertBulkPutLocated(src);
    }

    @Test
    void aBulkPutCompiledByC2NamesTheCallingLine() {
        // Warmed up, C2 compiles put(int, byte[]) into a call of a StubRoutines
        // copy stub, where AsyncGetCallTrace finds no walkable frame (-5): the
        // capture retries from the stub's caller, a call site with exact debug
        // info. (Without that retry this test fails every time here.)
        byte[] src = new byte[512];
        java.util.Arrays.fill(src, (byte) 3);
        ByteBuffer warm = ByteBuffer.allocateDirect(PAGE);
        for (int i = 0; i < 200_000; i++) {
            warm.put(100, src);
        }
        assertBulkPutLocated(src);
    }

    /** A bulk put of src at offset 100 of a watched page: one exact event whose Where names the put's line. */
    private static void assertBulkPutLocated(byte[] src) {
        try (MemoryWatcher w = locating(16)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(PAGE);
            w.watch(buf, "bulk");
            int line = nextLine();
            buf.put(100, src);
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            assertEquals(List.of(new ByteRange(100, src.length)), events.get(0).getChangedRanges());
            Where wh = events.get(0).where();
            assertEquals("", wh.noJavaFramesReason(), wh.stack().toString());
            assertEquals(ME + ".assertBulkPutLocated:" + line, wh.function() + ":" + wh.line(),
                    wh.stack().toString());
        }
    }

    @Test
    void aWriteFromAnotherJavaThreadNamesThatThread() throws Exception {
        try (MemoryWatcher w = locating(8)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(PAGE);
            w.watch(buf, "buf");
            int[] tid = new int[1];
            Thread t = new Thread(() -> {
                tid[0] = TestSupport.currentTid();
                store(buf, 9, (byte) 1);
            }, "where-writer");
            t.start();
            t.join();
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            Where wh = events.get(0).where();
            assertEquals(tid[0], wh.threadId().getAsInt());
            assertEquals("where-writer", wh.threadName());
            assertEquals(ME + ".store:" + storeLine, wh.function() + ":" + wh.line());
            assertTrue(names(fromUserFrame(wh)).get(1).startsWith(ME + ".lambda$aWriteFromAnotherJavaThreadNamesThatThread$"),
                    wh.stack().toString());
        }
    }

    @Test
    void withoutLocateWritersWhereIsEmpty() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(PAGE);
            w.watch(buf, "buf");
            store(buf, 1, (byte) 1);
            Where wh = w.checkChanges().get(0).where();
            assertEquals(List.of(), wh.stack());
            assertEquals("", wh.function());
            assertEquals(0, wh.line());
            assertEquals(TestSupport.currentTid(), wh.threadId().getAsInt());
        }
    }

    @Test
    void badLocationOptionsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> locating(0).close());
        assertThrows(IllegalArgumentException.class, () -> locating(33).close());
        assertThrows(IllegalArgumentException.class, () -> locating(-1).close());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new MemoryWatcher(new WatcherOptions().backend(Backend.POLL).locateWriters(true)).close());
        assertTrue(e.getMessage().contains("protect"), e.getMessage());
        assertEquals(8, new WatcherOptions().getStackDepth());
        assertFalse(new WatcherOptions().getLocateWriters());
    }

    static final class Box {
        int v;
    }

    static int deref(Box b) {
        return b.v;
    }

    static int stormLine;

    /**
     * Computes its line once: in C2 code, a write right after the inlined {@code nextLine()} (a
     * Throwable and its stack trace) is named by HotSpot's debug info as nextLine's last line (the
     * store has no debug info of its own; README, Known limits).
     */
    static void stormStore(ByteBuffer b, int index, byte v) {
        if (stormLine == 0) {
            stormLine = nextLine() + 1;
        }
        b.put(index, v);
    }

    /**
     * 10 000 pages, each its own region, each first written by {@link #stormStore} while another
     * thread throws NullPointerExceptions nonstop (HotSpot's SIGSEGV-based null checks) and the
     * writing loop throws some too: every event names the writing line (the method is interpreted,
     * then C1, then C2 compiled on the way), no JVM fault is taken for ours or lost.
     */
    @Test
    void faultStormOf10000PagesWithLocationAndNullPointerExceptions() throws Exception {
        final int n = 10_000;
        try (MemoryWatcher w = locating(8)) {
            ByteBuffer big = MemoryWatcher.allocatePageAligned(n * PAGE);
            java.util.Map<Integer, Integer> regionToPage = new java.util.HashMap<>();
            for (int i = 0; i < n; i++) {
                regionToPage.put(w.watch(big.slice(i * PAGE, PAGE), "page"), i);
            }
            AtomicBoolean stop = new AtomicBoolean();
            AtomicLong otherNpes = new AtomicLong();
            Thread thrower = new Thread(() -> {
                Box box = new Box();
                long i = 0;
                while (!stop.get()) {
                    try {
                        deref((i++ & 3) == 0 ? null : box);
                    } catch (NullPointerException e) {
                        otherNpes.incrementAndGet();
                    }
                }
            }, "npe-thrower");
            thrower.start();
            long t0 = System.nanoTime();
            int npes = 0;
            for (int i = 0; i < n; i++) {
                stormStore(big, i * PAGE + i % 64, (byte) (i % 251 + 1));
                if (i % 10 == 0) {
                    try {
                        deref(null);
                    } catch (NullPointerException e) {
                        npes++;
                    }
                }
            }
            long t1 = System.nanoTime();
            List<ChangeEvent> events = w.checkChanges();
            System.out.println("storm: writes " + (t1 - t0) / 1_000_000 + " ms, checkChanges "
                    + (System.nanoTime() - t1) / 1_000_000 + " ms");
            stop.set(true);
            thrower.join();
            assertEquals(1000, npes);
            assertTrue(otherNpes.get() > 0, "the other thread threw NullPointerExceptions");
            assertEquals(n, events.size());
            boolean[] seen = new boolean[n];
            int tid = TestSupport.currentTid();
            List<String> wrong = new ArrayList<>();
            int exact = 0;
            for (ChangeEvent e : events) {
                int i = regionToPage.get(e.getRegionId());
                assertFalse(seen[i], "each region once");
                seen[i] = true;
                assertEquals(List.of(new ByteRange(i % 64, 1)), e.getChangedRanges());
                assertEquals((byte) (i % 251 + 1), e.getNewValue()[i % 64]);
                Where wh = e.where();
                assertEquals(tid, wh.threadId().getAsInt());
                // The exact line, or 0 where HotSpot's debug info for C2 code names only the
                // method (bci -1; README, Known limits); never another line or method.
                if (!(ME + ".stormStore").equals(wh.function()) || wh.line() != stormLine && wh.line() != 0) {
                    wrong.add("page " + i + ": " + wh.function() + ":" + wh.line() + " " + wh.noJavaFramesReason()
                            + (wrong.isEmpty() ? " " + wh.stack() : ""));
                }
                if (wh.line() == stormLine) {
                    exact++;
                }
                if (i == 0) {
                    assertEquals(stormLine, wh.line(), "the first (interpreted) write: " + wh.stack());
                }
            }
            System.out.println("storm: " + exact + " of " + n + " events name line " + stormLine + ", the others line 0");
            assertEquals(List.of(), wrong.subList(0, Math.min(wrong.size(), 5)), wrong.size() + " wrong");
            assertEquals(0, w.getStats().getDroppedWheres());
        }
    }
}
