package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The native library comes from the jar resource, or from -Dmemwatch.library.path. */
class LibraryLoadingTest {
    /** The file libmemwatch_java.so is mapped from in this process, or null. */
    static String mappedLibrary() throws IOException {
        return Files.readAllLines(Path.of("/proc/self/maps")).stream()
                .filter(l -> l.endsWith("libmemwatch_java.so"))
                .map(l -> l.substring(l.indexOf('/')))
                .findFirst().orElse(null);
    }

    private static List<String> runProbe(String libraryPath) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + libraryPath);
        cmd.add(LoadProbe.class.getName());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        List<String> lines = new ArrayList<>(new String(out, StandardCharsets.UTF_8).lines().toList());
        lines.add("exit=" + p.exitValue());
        return lines;
    }

    @Test
    void loadedOnceFromTheJarResourceIntoAPrivateTemporaryDirectory() throws Exception {
        MemoryWatcher.pageSize(); // loads the library if no test did yet
        String mapped = mappedLibrary();
        assertTrue(mapped != null && mapped.contains("/memwatch-java-") && mapped.startsWith(
                Path.of(System.getProperty("java.io.tmpdir")).toRealPath().toString()), "mapped from " + mapped);
        assertEquals(1, Files.readAllLines(Path.of("/proc/self/maps")).stream()
                .filter(l -> l.endsWith("libmemwatch_java.so")).map(l -> l.substring(l.indexOf('/'))).distinct().count(),
                "one copy loaded");
    }

    @Test
    void systemPropertyPointsAtALibraryOnDisk() throws Exception {
        Path lib = Path.of("native", "target", "release", "libmemwatch_java.so").toAbsolutePath();
        assertTrue(Files.isRegularFile(lib), "cargo built " + lib);
        List<String> out = runProbe(lib.toString());
        assertTrue(out.contains("mapped=" + lib.toRealPath()), String.join("\n", out));
        assertTrue(out.contains("exit=0"), String.join("\n", out));
    }

    @Test
    void aMissingLibraryFileIsAClearLinkError() throws Exception {
        List<String> out = runProbe("/nonexistent/libmemwatch_java.so");
        String all = String.join("\n", out);
        assertNotEquals("exit=0", out.get(out.size() - 1), all);
        assertTrue(all.contains("UnsatisfiedLinkError") && all.contains("/nonexistent/libmemwatch_java.so"), all);
    }
}
