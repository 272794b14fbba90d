package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Runs {@link JniExercise} in a child JVM under {@code -Xcheck:jni}, with and without HotSpot's
 * signal-chaining library (libjsig) preloaded, and reads everything the JVM printed.
 */
class JniCheckTest {
    private static final Path JSIG = Path.of(System.getProperty("java.home"), "lib", "libjsig.so");

    /** What HotSpot's periodic signal check prints when a SIGSEGV handler replaced its own. */
    private static final String HANDLER_MODIFIED = "Warning: SIGSEGV handler modified!";

    record Run(int exitCode, List<String> lines) {
    }

    private static Run runChild(boolean jsig) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xcheck:jni");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        String lib = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (lib != null) {
            cmd.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + lib);
        }
        cmd.add(JniExercise.class.getName());
        // Long enough for several of HotSpot's periodic signal-handler checks (every ~50 ms);
        // the run without libjsig proves the check did run by reporting our handler.
        cmd.add("1500");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        if (jsig) {
            pb.environment().put("LD_PRELOAD", JSIG.toString());
        } else {
            pb.environment().remove("LD_PRELOAD");
        }
        Process p = pb.start();
        byte[] out = p.getInputStream().readAllBytes();
        boolean exited = p.waitFor(120, TimeUnit.SECONDS);
        if (!exited) {
            p.destroyForcibly();
        }
        assertTrue(exited, "child JVM exited by itself (the daemon delivery thread did not keep it alive)");
        return new Run(p.exitValue(), new String(out, StandardCharsets.UTF_8).lines().toList());
    }

    private static void assertNoJniComplaint(Run run) {
        for (String line : run.lines()) {
            String l = line.toLowerCase();
            boolean complaint = l.contains("in native method") || l.contains("jni call made")
                    || l.contains("jni local refs") || l.contains("fatal error") || l.contains("exception pending")
                    || l.contains("illegal") && l.contains("jni");
            assertTrue(!complaint, "-Xcheck:jni complained: " + line + "\nfull output:\n" + String.join("\n", run.lines()));
        }
        assertEquals(0, run.exitCode(), String.join("\n", run.lines()));
        assertTrue(run.lines().contains(JniExercise.DONE), String.join("\n", run.lines()));
    }

    @Test
    void withLibjsigTheJvmReportsNothingOfOurs() throws Exception {
        assertTrue(JSIG.toFile().isFile(), "this JDK ships " + JSIG);
        Run run = runChild(true);
        assertNoJniComplaint(run);
        for (String line : run.lines()) {
            assertTrue(!line.contains("handler modified") && !line.contains("Handler was modified"),
                    "with libjsig memwatch's sigaction is chained, not installed over the JVM's: " + line);
        }
    }

    @Test
    void withoutLibjsigOnlyTheDocumentedHandlerWarningAppears() throws Exception {
        Run run = runChild(false);
        assertNoJniComplaint(run);
        // Without libjsig, memwatch's SIGSEGV handler replaces HotSpot's (and forwards every fault
        // that is not memwatch's to it). -Xcheck:jni notices once and says so; this is documented
        // in the README. Seeing it also proves the child lived long enough for the check, which
        // the libjsig run relies on.
        assertTrue(run.lines().contains(HANDLER_MODIFIED), String.join("\n", run.lines()));
    }
}
