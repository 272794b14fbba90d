package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Every shared scenario in tests/behavior, read at test time, under every backend it lists, once
 * with direct ByteBuffers and once with byte[] arrays.
 */
class BehaviorScenariosTest {
    @TestFactory
    List<DynamicTest> sharedScenarios() throws Exception {
        List<DynamicTest> tests = new ArrayList<>();
        for (Scenario s : Scenario.loadAll()) {
            for (String backend : s.backends()) {
                for (Scenario.Kind kind : Scenario.Kind.values()) {
                    tests.add(DynamicTest.dynamicTest(s.name + " [" + backend + ", " + kind + "]",
                            s.file.toUri(), () -> s.run(backend, kind)));
                }
            }
        }
        return tests;
    }

    @Test
    void scenarioDirectoryIsTheSharedOne() throws Exception {
        List<Scenario> all = Scenario.loadAll();
        assertFalse(all.isEmpty());
        for (Scenario s : all) {
            assertFalse(s.backends().isEmpty(), s.name + " lists no backend");
        }
    }
}
