package io.memwatch;

import java.nio.file.Files;
import java.nio.file.Path;

/** Child-JVM program for {@link LibraryLoadingTest}: prints where libmemwatch_java.so was mapped from. */
public final class LoadProbe {
    private LoadProbe() {
    }

    /**
     * Loads the library (by creating a watcher) and prints the mapped file.
     *
     * @param args ignored
     * @throws Exception on I/O failure
     */
    public static void main(String[] args) throws Exception {
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            System.out.println("page=" + MemoryWatcher.pageSize());
        }
        System.out.println("mapped=" + LibraryLoadingTest.mappedLibrary());
    }
}
