package io.memwatch;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;

/**
 * Runs one shared behaviour scenario (tests/behavior/*.json, format in its README) on one
 * backend, with its buffers either as page-aligned direct ByteBuffers or as byte[] arrays.
 */
final class Scenario {
    /** How the scenario's buffers are made and watched. */
    enum Kind {
        /** Page-aligned direct ByteBuffers, regions watched as slices. */
        DIRECT,
        /** byte[] arrays, regions watched as (array, offset, length). */
        ARRAY
    }

    private static final HexFormat HEX = HexFormat.of();

    final Path file;
    final JsonObject json;
    final String name;

    private Scenario(Path file, JsonObject json) {
        this.file = file;
        this.json = json;
        this.name = json.get("name").getAsString();
    }

    /** The scenario directory: -Dmemwatch.behavior.dir, else ../tests/behavior from bindings-java. */
    static Path directory() {
        String dir = System.getProperty("memwatch.behavior.dir");
        Path p = dir != null ? Path.of(dir) : Path.of("..", "tests", "behavior");
        return p.toAbsolutePath().normalize();
    }

    /** Every scenario file, sorted by name. */
    static List<Scenario> loadAll() throws IOException {
        Path dir = directory();
        if (!Files.isDirectory(dir)) {
            throw new IllegalStateException("behaviour scenario directory not found: " + dir);
        }
        List<Scenario> out = new ArrayList<>();
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".json")).sorted().toList()) {
                out.add(new Scenario(f, JsonParser.parseString(Files.readString(f)).getAsJsonObject()));
            }
        }
        if (out.isEmpty()) {
            throw new IllegalStateException("no *.json scenarios in " + dir);
        }
        return out;
    }

    List<String> backends() {
        List<String> out = new ArrayList<>();
        for (JsonElement e : json.getAsJsonArray("backends")) {
            out.add(e.getAsString());
        }
        return out;
    }

    /** Sizes and offsets: an integer, or "Np", "Np+M", "Np-M" (N pages plus or minus M bytes). */
    static int size(JsonElement e) {
        if (e.getAsJsonPrimitive().isNumber()) {
            return e.getAsInt();
        }
        String s = e.getAsString().trim();
        int p = s.indexOf('p');
        if (p < 0) {
            return Integer.parseInt(s);
        }
        long pages = Long.parseLong(s.substring(0, p).trim());
        long v = pages * MemoryWatcher.pageSize();
        String rest = s.substring(p + 1).trim();
        if (!rest.isEmpty()) {
            char sign = rest.charAt(0);
            long m = Long.parseLong(rest.substring(1).trim());
            if (sign == '+') {
                v += m;
            } else if (sign == '-') {
                v -= m;
            } else {
                throw new IllegalArgumentException("bad size " + s);
            }
        }
        return Math.toIntExact(v);
    }

    /** A value spec: hex string or {len, fill, patches}. */
    static byte[] value(JsonElement spec) {
        if (spec.isJsonPrimitive()) {
            return HEX.parseHex(spec.getAsString());
        }
        JsonObject o = spec.getAsJsonObject();
        byte[] b = new byte[size(o.get("len"))];
        byte fill = o.has("fill") ? HEX.parseHex(o.get("fill").getAsString())[0] : 0;
        Arrays.fill(b, fill);
        if (o.has("patches")) {
            for (JsonElement pe : o.getAsJsonArray("patches")) {
                JsonArray patch = pe.getAsJsonArray();
                byte[] bytes = HEX.parseHex(patch.get(1).getAsString());
                System.arraycopy(bytes, 0, b, size(patch.get(0)), bytes.length);
            }
        }
        return b;
    }

    static String hex(byte[] b) {
        if (b == null) {
            return "null";
        }
        if (b.length > 64) {
            return HEX.formatHex(b, 0, 64) + "...(" + b.length + " bytes)";
        }
        return HEX.formatHex(b);
    }

    private WatcherOptions options(String backend) {
        WatcherOptions o = new WatcherOptions().backend(Backend.fromName(backend));
        JsonObject opts = json.has("options") ? json.getAsJsonObject("options") : new JsonObject();
        if (opts.has("max_value_bytes")) {
            o.maxValueBytes(size(opts.get("max_value_bytes")));
        }
        if (opts.has("preview_bytes")) {
            o.previewBytes(size(opts.get("preview_bytes")));
        }
        if (opts.has("snapshots")) {
            o.snapshots(opts.get("snapshots").getAsBoolean());
        }
        if (opts.has("writable_window_ms")) {
            o.writableWindow(Duration.ofMillis(opts.get("writable_window_ms").getAsLong()));
        }
        return o;
    }

    /** Runs the whole scenario once; throws AssertionError naming the step on any mismatch. */
    void run(String backend, Kind kind) {
        String where = name + " [backend " + backend + ", " + kind + " buffers]";
        Map<String, ByteBuffer> direct = new HashMap<>();
        Map<String, byte[]> arrays = new HashMap<>();
        for (JsonElement be : json.getAsJsonArray("buffers")) {
            JsonObject b = be.getAsJsonObject();
            int size = size(b.get("size"));
            byte fill = b.has("fill") ? HEX.parseHex(b.get("fill").getAsString())[0] : 0;
            String bname = b.get("name").getAsString();
            if (kind == Kind.DIRECT) {
                ByteBuffer buf = MemoryWatcher.allocatePageAligned(size);
                if (MemoryWatcher.addressOf(buf) % MemoryWatcher.pageSize() != 0) {
                    throw new AssertionError(where + ": allocatePageAligned returned an unaligned buffer");
                }
                for (int i = 0; i < size; i++) {
                    buf.put(i, fill);
                }
                direct.put(bname, buf);
            } else {
                byte[] a = new byte[size];
                Arrays.fill(a, fill);
                arrays.put(bname, a);
            }
        }
        MemoryWatcher created;
        try {
            created = new MemoryWatcher(options(backend));
        } catch (UnsupportedOperationException e) {
            // Reported as skipped (not passed): this machine lacks the backend.
            Assumptions.abort(where + ": backend not available here: " + e.getMessage());
            return;
        }
        List<ChangeEvent> delivered = new ArrayList<>();
        try (MemoryWatcher w = created) {
            Map<String, Integer> ids = new LinkedHashMap<>();
            for (JsonElement re : json.getAsJsonArray("regions")) {
                JsonObject r = re.getAsJsonObject();
                String buffer = r.get("buffer").getAsString();
                int off = size(r.get("offset"));
                int len = size(r.get("length"));
                String rname = r.get("name").getAsString();
                String meta = r.has("metadata") && !r.get("metadata").isJsonNull() ? r.get("metadata").getAsString() : null;
                int id = kind == Kind.DIRECT
                        ? w.watch(direct.get(buffer).slice(off, len), rname, meta)
                        : w.watch(arrays.get(buffer), off, len, rname, meta);
                ids.put(r.get("key").getAsString(), id);
            }
            // Steps are decoded before any runs, so consecutive writes follow each other closely
            // (the protect backend coalesces the writes of one writable window into one event).
            JsonArray steps = json.getAsJsonArray("steps");
            List<Runnable> actions = new ArrayList<>();
            for (int i = 0; i < steps.size(); i++) {
                JsonObject step = steps.get(i).getAsJsonObject();
                String at = where + " step " + i + " " + step;
                if (step.has("write")) {
                    JsonObject wr = step.getAsJsonObject("write");
                    String buffer = wr.get("buffer").getAsString();
                    int off = size(wr.get("offset"));
                    byte[] bytes;
                    if (wr.has("hex")) {
                        bytes = HEX.parseHex(wr.get("hex").getAsString());
                    } else {
                        bytes = new byte[size(wr.get("len"))];
                        Arrays.fill(bytes, HEX.parseHex(wr.get("byte").getAsString())[0]);
                    }
                    ByteBuffer buf = direct.get(buffer);
                    byte[] arr = arrays.get(buffer);
                    actions.add(() -> {
                        for (int k = 0; k < bytes.length; k++) {
                            if (buf != null) {
                                buf.put(off + k, bytes[k]);
                            } else {
                                arr[off + k] = bytes[k];
                            }
                        }
                    });
                } else if (step.has("check")) {
                    JsonArray expected = step.getAsJsonArray("check");
                    actions.add(() -> check(at, w, ids, expected));
                } else if (step.has("unwatch")) {
                    JsonObject u = step.getAsJsonObject("unwatch");
                    String key = u.get("region").getAsString();
                    boolean want = u.get("expect").getAsBoolean();
                    actions.add(() -> expectEq(at, "unwatch result", want, w.unwatch(ids.get(key))));
                } else if (step.has("constants")) {
                    long want = step.getAsJsonObject("constants").get("exit_flush_timeout_ms").getAsLong();
                    actions.add(() -> expectEq(at, "EXIT_FLUSH_TIMEOUT (ms)", want,
                            MemoryWatcher.EXIT_FLUSH_TIMEOUT.toMillis()));
                } else if (step.has("unwatch_unknown")) {
                    boolean want = step.getAsJsonObject("unwatch_unknown").get("expect").getAsBoolean();
                    actions.add(() -> expectEq(at, "unwatch(unknown) result", want, w.unwatch((int) 4_000_000_000L)));
                } else if (step.has("watch_error")) {
                    JsonObject e = step.getAsJsonObject("watch_error");
                    String want = e.get("expect").getAsString();
                    int len = size(e.get("length"));
                    if (e.has("null") && e.get("null").getAsBoolean()) {
                        actions.add(() -> expectError(at, want, () -> {
                            if (kind == Kind.DIRECT) {
                                w.watch(0L, len, "bad");
                            } else {
                                w.watch((byte[]) null, "bad");
                            }
                        }));
                    } else {
                        String buffer = e.get("buffer").getAsString();
                        int off = size(e.get("offset"));
                        actions.add(() -> expectError(at, want, () -> {
                            if (kind == Kind.DIRECT) {
                                w.watch(direct.get(buffer).slice(off, len), "bad");
                            } else {
                                w.watch(arrays.get(buffer), off, len, "bad", null);
                            }
                        }));
                    }
                } else if (step.has("check_error")) {
                    String want = step.getAsJsonObject("check_error").get("expect").getAsString();
                    actions.add(() -> expectError(at, want, w::checkChanges));
                } else if (step.has("close")) {
                    actions.add(w::close);
                } else if (step.has("stats")) {
                    JsonObject spec = step.getAsJsonObject("stats");
                    actions.add(() -> checkStats(at, w.getStats(), spec));
                } else if (step.has("set_callback")) {
                    boolean on = step.get("set_callback").getAsBoolean();
                    actions.add(() -> w.setCallback(on ? e -> {
                        synchronized (delivered) {
                            delivered.add(e);
                        }
                    } : null));
                } else if (step.has("check_callback")) {
                    JsonArray expected = step.getAsJsonArray("check_callback");
                    actions.add(() -> {
                        List<ChangeEvent> returned = w.checkChanges();
                        if (!returned.isEmpty()) {
                            throw new AssertionError(at + ": with a callback, checkChanges returned " + returned);
                        }
                        List<ChangeEvent> got;
                        synchronized (delivered) {
                            got = new ArrayList<>(delivered);
                            delivered.clear();
                        }
                        compare(at, got, ids, expected);
                    });
                } else {
                    throw new AssertionError(at + ": unknown step kind");
                }
            }
            // A collection now makes one during the steps (a pause that could split the writes
            // of one writable window) less likely.
            System.gc();
            for (Runnable action : actions) {
                action.run();
            }
        }
    }

    private static void check(String at, MemoryWatcher w, Map<String, Integer> ids, JsonArray expected) {
        compare(at, w.checkChanges(), ids, expected);
    }

    /** The documented exception class of each engine error kind (see MemWatchException). */
    private static final Map<String, Class<? extends RuntimeException>> ERROR_CLASSES = Map.of(
            "invalid_argument", InvalidArgumentException.class,
            "unmapped", UnmappedException.class,
            "read_only", ReadOnlyException.class,
            "overlap", OverlapException.class,
            "unsupported", UnsupportedOperationException.class,
            "closed", IllegalStateException.class,
            "os", MemWatchException.class);

    private static void expectError(String at, String kind, Runnable call) {
        Class<? extends RuntimeException> want = ERROR_CLASSES.get(kind);
        if (want == null) {
            throw new AssertionError(at + ": unknown error kind " + kind);
        }
        try {
            call.run();
        } catch (RuntimeException e) {
            if (e.getClass() != want) {
                throw new AssertionError(at + ": expected " + want.getSimpleName() + " (" + kind + "), got " + e, e);
            }
            if (kind.equals("overlap") && !e.getMessage().contains("overlap")) {
                throw new AssertionError(at + ": expected an overlap error, got " + e, e);
            }
            return;
        }
        throw new AssertionError(at + ": expected " + want.getSimpleName() + " (" + kind + "), the call succeeded");
    }

    /** snake_case scenario name -> the Stats getter (fallback_regions -> getFallbackRegions). */
    private static Object statsField(String at, Stats s, String field) {
        StringBuilder getter = new StringBuilder("get");
        for (String part : field.split("_")) {
            getter.append(Character.toUpperCase(part.charAt(0))).append(part.substring(1));
        }
        try {
            Object v = Stats.class.getMethod(getter.toString()).invoke(s);
            return v instanceof Backend b ? b.getName() : v;
        } catch (NoSuchMethodException e) {
            throw new AssertionError(at + ": stats field " + field + " missing (no Stats." + getter + "())");
        } catch (ReflectiveOperationException e) {
            throw new AssertionError(at + ": Stats." + getter + "() failed", e);
        }
    }

    private static void checkStats(String at, Stats s, JsonObject spec) {
        if (spec.has("fields")) {
            for (JsonElement f : spec.getAsJsonArray("fields")) {
                statsField(at, s, f.getAsString());
            }
        }
        if (spec.has("equal")) {
            for (Map.Entry<String, JsonElement> e : spec.getAsJsonObject("equal").entrySet()) {
                Object got = statsField(at, s, e.getKey());
                Object want = e.getValue().getAsJsonPrimitive().isNumber() ? (Object) e.getValue().getAsLong()
                        : e.getValue().getAsString();
                expectEq(at, "stats " + e.getKey(), want, got);
            }
        }
    }

    private static void compare(String at, List<ChangeEvent> events, Map<String, Integer> ids, JsonArray expected) {
        if (events.size() != expected.size()) {
            throw new AssertionError(at + ": expected " + expected.size() + " event(s), got " + events.size() + ": " + events);
        }
        Map<Integer, ChangeEvent> byRegion = new HashMap<>();
        for (ChangeEvent e : events) {
            if (byRegion.put(e.getRegionId(), e) != null) {
                throw new AssertionError(at + ": two events for region " + e.getRegionId() + ": " + events);
            }
        }
        for (JsonElement ee : expected) {
            JsonObject x = ee.getAsJsonObject();
            String key = x.get("region").getAsString();
            ChangeEvent e = byRegion.get(ids.get(key));
            if (e == null) {
                throw new AssertionError(at + ": no event for region " + key + " (id " + ids.get(key) + "): " + events);
            }
            String ctx = at + " region " + key;
            if (x.has("variable_name")) {
                expectEq(ctx, "variable_name", x.get("variable_name").getAsString(), e.getVariableName());
            }
            if (x.has("how_big")) {
                expectEq(ctx, "how_big", (long) size(x.get("how_big")), e.getHowBig());
            }
            if (x.has("coalesced")) {
                expectEq(ctx, "coalesced", x.get("coalesced").getAsInt(), e.getCoalesced());
            }
            if (x.has("metadata")) {
                JsonElement m = x.get("metadata");
                expectEq(ctx, "metadata", m.isJsonNull() ? null : m.getAsString(), e.getMetadata());
            }
            if (x.has("changed_ranges")) {
                List<ByteRange> want = new ArrayList<>();
                for (JsonElement re : x.getAsJsonArray("changed_ranges")) {
                    JsonArray r = re.getAsJsonArray();
                    want.add(new ByteRange(size(r.get(0)), size(r.get(1))));
                }
                expectEq(ctx, "changed_ranges", want, e.getChangedRanges());
            }
            expectBytes(ctx, "old_value", x, e.getOldValue());
            expectBytes(ctx, "new_value", x, e.getNewValue());
            expectBytes(ctx, "old_preview", x, e.getOldPreview());
            expectBytes(ctx, "new_preview", x, e.getNewPreview());
        }
    }

    private static void expectBytes(String ctx, String field, JsonObject x, byte[] actual) {
        if (!x.has(field)) {
            return;
        }
        JsonElement spec = x.get(field);
        byte[] want = spec == null || spec instanceof JsonNull ? null : value(spec);
        if (!Arrays.equals(want, actual)) {
            throw new AssertionError(ctx + ": " + field + " expected " + hex(want) + " but was " + hex(actual));
        }
    }

    private static void expectEq(String ctx, String field, Object want, Object got) {
        if (want == null ? got != null : !want.equals(got)) {
            throw new AssertionError(ctx + ": " + field + " expected " + want + " but was " + got);
        }
    }
}
