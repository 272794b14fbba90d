package io.memwatch;

import java.util.HexFormat;

/**
 * Child-JVM program for {@link ValueStoreTest}: opens a store by name and prints, one line per
 * key, the hex of its value or {@code null}.
 */
public final class StoreReader {
    private StoreReader() {
    }

    /**
     * Reads the keys.
     *
     * @param args the store name, then the keys
     */
    public static void main(String[] args) {
        try (ValueStore store = ValueStore.open(args[0])) {
            for (int i = 1; i < args.length; i++) {
                byte[] v = store.get(args[i]);
                System.out.println(v == null ? "null" : HexFormat.of().formatHex(v));
            }
        }
    }
}
