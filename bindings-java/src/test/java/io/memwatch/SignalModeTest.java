package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** Guards the two Surefire executions: the jsig one really runs with libjsig preloaded. */
class SignalModeTest {
    @Test
    void runsInTheModeTheExecutionPromises() throws Exception {
        boolean expectJsig = Boolean.getBoolean("memwatch.expect.jsig");
        assertEquals(expectJsig, TestSupport.jsigPreloaded(), "LD_PRELOAD=" + System.getenv("LD_PRELOAD"));
        boolean mapped = Files.readAllLines(Path.of("/proc/self/maps")).stream().anyMatch(l -> l.endsWith("/libjsig.so"));
        assertEquals(expectJsig, mapped, "libjsig.so mapped into this JVM");
        assertTrue(Files.isDirectory(Scenario.directory()), "scenario dir still configured: " + Scenario.directory());
    }
}
