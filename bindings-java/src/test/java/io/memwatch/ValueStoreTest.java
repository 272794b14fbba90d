package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The value store: values of regions larger than maxValueBytes go to a MemStream store, events
 * carry their keys, and {@link ValueStore} reads them back, in this JVM and in a child JVM.
 */
class ValueStoreTest {
    private static final AtomicInteger COUNTER = new AtomicInteger();
    private static final int MAX_VALUE_BYTES = 4096;
    private static final long CAPACITY = 8L << 20;

    /** This test's store: unique per process (pid) and test. */
    private String name;

    @BeforeEach
    void pickName() {
        name = "mw-java-test-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
        ValueStore.unlink(name);
    }

    @AfterEach
    void unlinkStore() {
        ValueStore.unlink(name);
    }

    private static String key(int regionId, int epoch) {
        return "memwatch/4/" + regionId + "/" + epoch;
    }

    private static byte[] pattern(int size) {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) {
            b[i] = (byte) ((i * 7) % 251);
        }
        return b;
    }

    private static byte[] contents(ByteBuffer buf) {
        byte[] out = new byte[buf.capacity()];
        buf.get(0, out);
        return out;
    }

    /** Reads the keys in a child JVM; null for keys the store does not hold. */
    private static List<byte[]> readInAnotherProcess(String store, String... keys) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        String lib = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (lib != null) {
            cmd.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + lib);
        }
        cmd.add(StoreReader.class.getName());
        cmd.add(store);
        cmd.addAll(List.of(keys));
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        byte[] out = p.getInputStream().readAllBytes();
        boolean exited = p.waitFor(120, TimeUnit.SECONDS);
        if (!exited) {
            p.destroyForcibly();
        }
        assertTrue(exited, "reader JVM exited");
        assertEquals(0, p.exitValue(), "reader JVM exit code");
        List<byte[]> values = new ArrayList<>();
        for (String line : new String(out, StandardCharsets.US_ASCII).lines().toList()) {
            values.add(line.equals("null") ? null : HexFormat.of().parseHex(line));
        }
        assertEquals(keys.length, values.size(), "one line per key");
        return values;
    }

    private static void assertStored(String store, String key, byte[] expected) {
        try (ValueStore s = ValueStore.open(store)) {
            assertArrayEquals(expected, s.get(key), key);
        }
    }

    private static ChangeEvent onlyEvent(MemoryWatcher w) {
        List<ChangeEvent> events = w.checkChanges();
        assertEquals(1, events.size(), "exactly one event: " + events);
        return events.get(0);
    }

    @ParameterizedTest
    @EnumSource(value = Backend.class, names = {"PROTECT", "WRITEWATCH", "POLL"})
    void largeDirectBufferValuesGoToTheStoreAndAnotherProcessReadsThem(Backend backend) throws Exception {
        int size = 3 * MemoryWatcher.pageSize() + 100;
        try (MemoryWatcher w = TestBackends.open(new WatcherOptions().backend(backend).maxValueBytes(MAX_VALUE_BYTES))) {
            ByteBuffer big = MemoryWatcher.allocatePageAligned(size);
            big.put(0, pattern(size));
            w.setValueStore(name, CAPACITY);
            assertEquals(name, w.getValueStoreName());
            int id = w.watch(big, "big");
            byte[] v0 = contents(big);

            big.put(5000, (byte) ~big.get(5000));
            big.put(5001, (byte) ~big.get(5001));
            byte[] v1 = contents(big);
            ChangeEvent e = onlyEvent(w);
            assertEquals(id, e.getRegionId());
            assertEquals(List.of(new ByteRange(5000, 2)), e.getChangedRanges());
            assertNull(e.getOldValue(), "old value goes to the store");
            assertNull(e.getNewValue(), "new value goes to the store");
            assertEquals(key(id, 0), e.getStorageKeyOld());
            assertEquals(key(id, 1), e.getStorageKeyNew());
            assertStored(name, e.getStorageKeyOld(), v0);
            assertStored(name, e.getStorageKeyNew(), v1);
            List<byte[]> read = readInAnotherProcess(name, e.getStorageKeyOld(), e.getStorageKeyNew());
            assertArrayEquals(v0, read.get(0), "old value read by another process");
            assertArrayEquals(v1, read.get(1), "new value read by another process");

            // The next event's old key is this one's new key.
            big.put(size - 1, (byte) ~big.get(size - 1));
            byte[] v2 = contents(big);
            ChangeEvent e2 = onlyEvent(w);
            assertEquals(List.of(new ByteRange(size - 1, 1)), e2.getChangedRanges());
            assertEquals(e.getStorageKeyNew(), e2.getStorageKeyOld());
            assertEquals(key(id, 2), e2.getStorageKeyNew());
            assertStored(name, e2.getStorageKeyOld(), v1);
            assertStored(name, e2.getStorageKeyNew(), v2);

            // Small regions keep their values inline, without keys.
            ByteBuffer small = MemoryWatcher.allocatePageAligned(100);
            int smallId = w.watch(small, "small");
            small.put(3, (byte) 9);
            ChangeEvent e3 = onlyEvent(w);
            assertEquals(smallId, e3.getRegionId());
            assertArrayEquals(new byte[100], e3.getOldValue());
            assertEquals(9, e3.getNewValue()[3]);
            assertNull(e3.getStorageKeyOld());
            assertNull(e3.getStorageKeyNew());

            // Cleared: large regions have neither values nor keys.
            w.clearValueStore();
            assertNull(w.getValueStoreName());
            big.put(0, (byte) ~big.get(0));
            ChangeEvent e4 = onlyEvent(w);
            assertEquals(List.of(new ByteRange(0, 1)), e4.getChangedRanges());
            assertNull(e4.getOldValue());
            assertNull(e4.getNewValue());
            assertNull(e4.getStorageKeyOld(), "no store, no old key");
            assertNull(e4.getStorageKeyNew(), "no store, no new key");
        }
        assertTrue(ValueStore.unlink(name), "the store existed until unlinked");
        assertFalse(ValueStore.unlink(name), "and is gone after");
    }

    /** byte[] regions are diffed by the companion poll watcher: it gets the store too. */
    @ParameterizedTest
    @EnumSource(value = Backend.class, names = {"PROTECT", "WRITEWATCH", "POLL"})
    void largeByteArrayValuesGoToTheStoreWhenTheStoreWasSetFirst(Backend backend) throws Exception {
        try (MemoryWatcher w = TestBackends.open(new WatcherOptions().backend(backend).maxValueBytes(MAX_VALUE_BYTES))) {
            w.setValueStore(name, CAPACITY);
            byte[] array = pattern(10_000);
            int id = w.watch(array, "array");   // the companion watcher is created now
            byte[] v0 = array.clone();
            array[7000] = (byte) ~array[7000];
            array[7001] = (byte) ~array[7001];
            byte[] v1 = array.clone();
            ChangeEvent e = onlyEvent(w);
            assertEquals(id, e.getRegionId());
            assertEquals(List.of(new ByteRange(7000, 2)), e.getChangedRanges());
            assertNull(e.getOldValue());
            assertNull(e.getNewValue());
            assertEquals(key(id, 0), e.getStorageKeyOld());
            assertEquals(key(id, 1), e.getStorageKeyNew());
            List<byte[]> read = readInAnotherProcess(name, e.getStorageKeyOld(), e.getStorageKeyNew());
            assertArrayEquals(v0, read.get(0), "old value read by another process");
            assertArrayEquals(v1, read.get(1), "new value read by another process");

            w.clearValueStore();
            array[0] = (byte) ~array[0];
            ChangeEvent e2 = onlyEvent(w);
            assertEquals(List.of(new ByteRange(0, 1)), e2.getChangedRanges());
            assertNull(e2.getStorageKeyOld());
            assertNull(e2.getStorageKeyNew());
            assertNull(e2.getNewValue());
        }
        assertTrue(ValueStore.unlink(name));
    }

    @Test
    void setValueStoreAfterWatchingStoresTheCurrentValuesOfBothWatchers() {
        int size = 2 * MemoryWatcher.pageSize();
        try (MemoryWatcher w = new MemoryWatcher(new WatcherOptions().maxValueBytes(100))) {
            ByteBuffer buffer = MemoryWatcher.allocatePageAligned(size);
            buffer.put(0, pattern(size));
            int bufferId = w.watch(buffer, "buffer");
            byte[] array = pattern(5000);
            int arrayId = w.watch(array, "array");   // the companion exists before the store
            w.setValueStore(name, CAPACITY);
            try (ValueStore s = ValueStore.open(name)) {
                assertArrayEquals(pattern(size), s.get(key(bufferId, 0)));
                assertArrayEquals(pattern(5000), s.get(key(arrayId, 0)));
                assertNull(s.get(key(arrayId, 1)), "no such epoch yet");

                array[4999] = (byte) ~array[4999];
                array[4998] = (byte) ~array[4998];
                ChangeEvent e = onlyEvent(w);
                assertEquals(arrayId, e.getRegionId());
                assertEquals(List.of(new ByteRange(4998, 2)), e.getChangedRanges());
                assertArrayEquals(pattern(5000), s.get(e.getStorageKeyOld()));
                assertArrayEquals(array, s.get(e.getStorageKeyNew()));

                buffer.put(10, (byte) ~buffer.get(10));
                buffer.put(11, (byte) ~buffer.get(11));
                ChangeEvent e2 = onlyEvent(w);
                assertEquals(bufferId, e2.getRegionId());
                assertEquals(List.of(new ByteRange(10, 2)), e2.getChangedRanges());
                assertArrayEquals(pattern(size), s.get(e2.getStorageKeyOld()));
                assertArrayEquals(contents(buffer), s.get(e2.getStorageKeyNew()));
            }
        }
        assertTrue(ValueStore.unlink(name));
    }

    @Test
    void valueStoreHandle() {
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class, () -> ValueStore.open(name));
        assertTrue(missing.getMessage().contains("no store named"), missing.getMessage());
        assertFalse(ValueStore.unlink(name), "nothing to unlink");
        assertThrows(IllegalArgumentException.class, () -> ValueStore.open(null));
        assertThrows(IllegalArgumentException.class, () -> ValueStore.open("not/a/name"));
        assertThrows(IllegalArgumentException.class, () -> ValueStore.unlink(""));

        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            w.setValueStore(name, 1 << 20);
        }
        ValueStore s = ValueStore.open(name);
        assertEquals(name, s.getName());
        assertNull(s.get("memwatch/4/999999/0"), "absent key");
        assertThrows(IllegalArgumentException.class, () -> s.get(null));
        assertThrows(IllegalArgumentException.class, () -> s.get(""));
        assertFalse(s.isClosed());
        s.close();
        s.close();
        assertTrue(s.isClosed());
        assertThrows(IllegalStateException.class, () -> s.get("memwatch/4/1/0"));
        assertTrue(ValueStore.unlink(name));
    }

    @Test
    void setValueStoreErrors() {
        MemoryWatcher w = new MemoryWatcher(Backend.POLL);
        assertNull(w.getValueStoreName());
        assertThrows(IllegalArgumentException.class, () -> w.setValueStore(null, CAPACITY));
        assertThrows(IllegalArgumentException.class, () -> w.setValueStore(name, 0));
        assertThrows(IllegalArgumentException.class, () -> w.setValueStore(name, -1));
        assertThrows(IllegalArgumentException.class, () -> w.setValueStore("bad name", CAPACITY));
        assertThrows(IllegalArgumentException.class, () -> w.setValueStore(name, Long.MAX_VALUE), "capacity out of range");
        assertNull(w.getValueStoreName(), "failed calls set nothing");
        w.clearValueStore();   // nothing set: no-op
        w.close();
        assertThrows(IllegalStateException.class, () -> w.setValueStore(name, CAPACITY));
        assertThrows(IllegalStateException.class, w::clearValueStore);
        assertFalse(ValueStore.unlink(name), "no store was created by the failed calls");
    }
}
