package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The writing line of a nested direct-buffer write in child JVMs running {@link WhereChild}:
 * interpreted only ({@code -Xint}), and C2-compiled ({@code -XX:-TieredCompilation -Xbatch}: the
 * 30 000 warm-up calls compile {@code hotCaller} with C2 before the watched write, synchronously,
 * with {@code hotStore} and {@code ByteBuffer.put} inlined; {@code -XX:+PrintCompilation} shows it).
 */
class WhereJitTest {
    private static List<String> runChild(String... jvmArgs) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of(jvmArgs));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        String lib = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (lib != null) {
            cmd.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + lib);
        }
        cmd.add(WhereChild.class.getName());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child exited");
        List<String> lines = new String(out, StandardCharsets.UTF_8).lines().toList();
        assertEquals(0, p.exitValue(), String.join("\n", lines));
        return lines;
    }

    private static String field(List<String> lines, String key) {
        return lines.stream().filter(l -> l.startsWith(key + " ")).map(l -> l.substring(key.length() + 1))
                .findFirst().orElseThrow(() -> new AssertionError("no " + key + " in\n" + String.join("\n", lines)));
    }

    private static void assertLines(List<String> lines) {
        String all = String.join("\n", lines);
        List<String> expected = List.of(field(lines, "expected").split(" "));
        assertEquals(expected.get(0), field(lines, "where"), all);
        List<String> stack = List.of(field(lines, "stack").split(" "));
        assertEquals(expected, stack.subList(0, Math.min(3, stack.size())), all);
        assertEquals("", field(lines, "reason"), all);
    }

    @Test
    void interpretedOnly() throws Exception {
        assertLines(runChild("-Xint"));
    }

    @Test
    void afterC2Compilation() throws Exception {
        List<String> lines = runChild("-XX:-TieredCompilation", "-Xbatch", "-XX:+PrintCompilation");
        assertTrue(lines.stream().anyMatch(l -> l.contains("io.memwatch.WhereChild::hotCaller")
                && !l.contains("made not entrant")), "hotCaller was compiled:\n" + String.join("\n", lines));
        assertLines(lines);
    }
}
