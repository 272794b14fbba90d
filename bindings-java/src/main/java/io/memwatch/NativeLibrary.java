package io.memwatch;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;

/**
 * Loads the JNI library once: from the file named by the system property
 * {@value #PATH_PROPERTY} if set, else from the jar resource
 * {@code /native/<os>-<arch>/libmemwatch_java.so}, extracted to a private temporary file.
 */
final class NativeLibrary {
    /** System property naming a {@code libmemwatch_java.so} on disk to load instead of the jar's copy. */
    static final String PATH_PROPERTY = "memwatch.library.path";

    private static final String LIB_FILE = "libmemwatch_java.so";

    private static boolean loaded;

    private NativeLibrary() {
    }

    /** Loads the library if it is not loaded yet; throws {@link UnsatisfiedLinkError} on failure. */
    static synchronized void load() {
        if (loaded) {
            return;
        }
        String explicit = System.getProperty(PATH_PROPERTY);
        if (explicit != null && !explicit.isEmpty()) {
            System.load(Path.of(explicit).toAbsolutePath().toString());
        } else {
            System.load(extract().toString());
        }
        Native.init(ChangeEvent.class, Stats.class, CallbackDispatcher.class, MemWatchException.class);
        loaded = true;
    }

    /** The resource folder for this platform, e.g. {@code linux-x86_64}. */
    static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase();
        String arch = System.getProperty("os.arch", "");
        String osPart = os.startsWith("linux") ? "linux" : os.replaceAll("[^a-z0-9]", "");
        String archPart = switch (arch) {
            case "amd64", "x86_64" -> "x86_64";
            case "aarch64", "arm64" -> "aarch64";
            default -> arch;
        };
        return osPart + "-" + archPart;
    }

    private static Path extract() {
        String resource = "/native/" + platform() + "/" + LIB_FILE;
        try (InputStream in = NativeLibrary.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new UnsatisfiedLinkError("memwatch has no native library for " + platform()
                        + " (resource " + resource + " missing from the jar); set -D" + PATH_PROPERTY
                        + "=/path/to/" + LIB_FILE + " to use one on disk");
            }
            Path dir = Files.createTempDirectory("memwatch-java-",
                    PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            Path lib = dir.resolve(LIB_FILE);
            Files.copy(in, lib, StandardCopyOption.REPLACE_EXISTING);
            // Once mapped the file is no longer needed; delete it at exit.
            lib.toFile().deleteOnExit();
            dir.toFile().deleteOnExit();
            return lib;
        } catch (IOException e) {
            UnsatisfiedLinkError err = new UnsatisfiedLinkError(
                    "cannot extract memwatch native library: " + e.getMessage());
            err.initCause(e);
            throw err;
        }
    }
}
