package io.memwatch;

import java.util.List;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * Who wrote: the first write to a page in its writable window, captured in memwatch's SIGSEGV
 * handler (backend {@link Backend#PROTECT} with {@link WatcherOptions#locateWriters(boolean)}).
 * {@link #file()}, {@link #function()} and {@link #line()} name the first <em>user</em> frame:
 * the innermost Java frame outside the JDK ({@code java.*}, {@code javax.*}, {@code jdk.*},
 * {@code sun.*}, {@code com.sun.*}; e.g. the caller of {@code ByteBuffer.put}), or, without Java
 * frames, the innermost native frame outside memwatch and libc. The JDK's frames stay in
 * {@link #stack()}.
 *
 * @param threadId kernel thread id ({@code gettid}) of the writer, if known
 * @param threadName the writer's native thread name (at most 15 characters), or empty
 * @param faultIp address of the writing instruction, if known
 * @param module the named frame's module ({@code "java"} for a Java frame)
 * @param moduleOffset the named frame's bytecode index (Java) or offset in its module (native)
 * @param file the named frame's source file, or empty
 * @param function the named frame's function ({@code package.Class.method} for Java), or empty
 * @param line the named frame's line, 0 when unknown
 * @param stack up to {@code stackDepth} Java frames, then up to {@code stackDepth} native frames,
 *     innermost first
 * @param unattributedFaults faults on other pages of the region merged into this event, whose
 *     writers are not reported
 * @param noJavaFramesReason why a located write has no Java frames (e.g. written by a thread that
 *     is not a Java thread, or AsyncGetCallTrace returned an error code); empty when it has them
 */
public record Where(OptionalInt threadId, String threadName, OptionalLong faultIp, String module,
        long moduleOffset, String file, String function, int line, List<Frame> stack,
        int unattributedFaults, String noJavaFramesReason) {
    /** Copies the stack into an unmodifiable list. */
    public Where {
        stack = List.copyOf(stack);
    }

    /**
     * The Java frames of {@link #stack()}, innermost first.
     *
     * @return the Java frames (possibly empty)
     */
    public List<Frame> javaStack() {
        return stack.stream().filter(Frame::isJava).toList();
    }
}
