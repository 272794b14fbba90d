package io.memwatch;

/**
 * One frame of {@link Where#stack()}, innermost first: a Java frame ({@link #isJava()}: class and
 * method, source file, line, bytecode index) or a native one (instruction address, module and
 * offset, and function, file and line from debug info when the module has it).
 *
 * @param ip instruction address of a native frame (the write itself for the innermost, a return
 *     address minus one for callers); 0 for Java frames
 * @param module {@code "java"} for Java frames; else the path of the native module (executable,
 *     shared library), empty for anonymous code such as HotSpot's interpreter and JIT code
 * @param moduleOffset the bytecode index of a Java frame; else {@code ip}'s offset in the module
 * @param function {@code package.Class.method} of a Java frame; else the native function, or empty
 * @param file source file name (Java: as the class file names it, e.g. {@code Foo.java}), or empty
 * @param line source line, 0 when unknown
 * @param inlined a native frame inlined into its caller (from debug info); false for Java frames
 */
public record Frame(long ip, String module, long moduleOffset, String function, String file, int line,
        boolean inlined) {
    /**
     * Whether this is a Java frame (from AsyncGetCallTrace) rather than a native one.
     *
     * @return true for Java frames
     */
    public boolean isJava() {
        return "java".equals(module);
    }

    /**
     * The class of a Java frame, e.g. {@code java.nio.DirectByteBuffer}; empty for native frames.
     *
     * @return the fully qualified class name, or empty
     */
    public String className() {
        int dot = function.lastIndexOf('.');
        return isJava() && dot > 0 ? function.substring(0, dot) : "";
    }

    /**
     * The method of a Java frame, e.g. {@code put}; empty for native frames.
     *
     * @return the method name, or empty
     */
    public String methodName() {
        int dot = function.lastIndexOf('.');
        return isJava() ? function.substring(dot + 1) : "";
    }

    /** {@code function (file:line)}, like a Java stack trace element. */
    @Override
    public String toString() {
        String where = file.isEmpty() ? (isJava() ? "bci " + moduleOffset : module + "+0x"
                + Long.toHexString(moduleOffset)) : file + ":" + line;
        return (function.isEmpty() ? "?" : function) + " (" + where + ")";
    }
}
