import io.memwatch.ByteRange;
import io.memwatch.ChangeEvent;
import io.memwatch.MemoryWatcher;
import io.memwatch.ValueStore;
import java.util.HexFormat;

/**
 * Large values: a region bigger than maxValueBytes (4096 by default) has its whole old and new
 * values in a MemStream shared-memory store, and its events carry their keys.
 *
 * <p>Run (from the repository root, after building the jar with mvn -f bindings-java package):
 * <pre>
 *   java -cp bindings-java/target/memwatch-0.1.0.jar examples/java/ValueStoreExample.java
 * </pre>
 */
public class ValueStoreExample {
    public static void main(String[] args) {
        // One store per watching process: keys name regions, not processes.
        String storeName = "memwatch-java-example-" + ProcessHandle.current().pid();
        try (MemoryWatcher watcher = new MemoryWatcher()) {
            watcher.setValueStore(storeName, 16 << 20);   // created with 16 MiB, LRU eviction
            byte[] image = new byte[64 * 1024];
            watcher.watch(image, "image");

            image[100] = 1;
            image[101] = 2;

            try (ValueStore store = ValueStore.open(storeName)) {   // any process can open it
                for (ChangeEvent e : watcher.checkChanges()) {
                    byte[] before = store.get(e.getStorageKeyOld());   // null once evicted
                    byte[] after = store.get(e.getStorageKeyNew());
                    ByteRange r = e.getChangedRanges().get(0);
                    int from = (int) r.offset();
                    int to = (int) (r.offset() + r.length());
                    System.out.println(e.getVariableName() + " changed: bytes [" + from + ", " + to + ") "
                            + HexFormat.of().formatHex(before, from, to) + " -> "
                            + HexFormat.of().formatHex(after, from, to) + ", inline value: " + e.getNewValue());
                    System.out.println("keys: " + e.getStorageKeyOld() + ", " + e.getStorageKeyNew()
                            + " (" + after.length + " bytes each)");
                }
            }
        } finally {
            // The store outlives the watcher until its name is removed.
            System.out.println("store unlinked: " + ValueStore.unlink(storeName));
        }
    }
}
