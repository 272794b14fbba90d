import io.memwatch.ByteRange;
import io.memwatch.ChangeEvent;
import io.memwatch.MemoryWatcher;
import java.nio.ByteBuffer;
import java.util.HexFormat;

/**
 * The seed's Java example, made real: watch memory, change it, get told.
 *
 * <p>Run (from the repository root, after building the jar with mvn -f bindings-java package):
 * <pre>
 *   java -cp bindings-java/target/memwatch-0.1.0.jar examples/java/MemWatchExample.java
 * </pre>
 */
public class MemWatchExample {
    private static void print(ChangeEvent e) {
        HexFormat hex = HexFormat.of();
        StringBuilder sb = new StringBuilder(e.getVariableName()).append(" changed:");
        for (ByteRange r : e.getChangedRanges()) {
            int from = (int) r.offset();
            int to = (int) (r.offset() + r.length());
            sb.append(" bytes [").append(from).append(", ").append(to).append(") ")
                    .append(hex.formatHex(e.getOldValue(), from, to)).append(" -> ")
                    .append(hex.formatHex(e.getNewValue(), from, to));
        }
        e.getThreadId().ifPresent(tid -> sb.append(" (written by thread ").append(tid).append(')'));
        System.out.println(sb);
    }

    public static void main(String[] args) {
        try (MemoryWatcher watcher = new MemoryWatcher()) {
            // A direct buffer: its memory never moves, so it is watched in place (page protection
            // or userfaultfd); events name the writing thread where the backend knows it.
            ByteBuffer buffer = MemoryWatcher.allocatePageAligned(100);
            watcher.watch(buffer, "buffer");

            // A byte[]: the garbage collector moves arrays, so memwatch polls a copy of it.
            byte[] data = new byte[100];
            watcher.watch(data, "data");

            watcher.setCallback(MemWatchExample::print);

            buffer.put(0, (byte) 42);    // detected
            data[0] = 42;                // detected
            data[10] = 7;                // detected, same event as data[0]

            // Wait until every change made so far was delivered to the callback.
            watcher.checkChanges();
            System.out.println("backend: " + watcher.getStats().getBackend().getName()
                    + ", events: " + watcher.getStats().getEvents());
        }
    }
}
