package io.memwatch;

import java.nio.ByteBuffer;

/** The JNI entry points (bindings-java/native). Every handle argument is a live native handle. */
final class Native {
    private Native() {
    }

    static native void init(Class<?> changeEvent, Class<?> stats, Class<?> dispatcher, Class<?> exception);

    static native int pageSize();

    static native long exitFlushTimeoutMs();

    static native long defaultOption(String name);

    static native long directAddress(ByteBuffer buffer);

    static native long create(String backend, long writableWindowNs, long pollIntervalNs,
            long maxValueBytes, long previewBytes, long ringCapacity, boolean snapshots,
            boolean locateWriters, int stackDepth);

    static native int watchAddress(long handle, long address, long length, String name, String metadata);

    static native int watchBuffer(long handle, ByteBuffer buffer, long offset, long length, String name,
            String metadata);

    static native int watchArray(long handle, byte[] array, int offset, int length, String name,
            String metadata);

    static native boolean unwatch(long handle, int regionId);

    static native void setCallback(long handle, CallbackDispatcher dispatcher);

    static native ChangeEvent[] checkChanges(long handle, long sliceMs, long[] fence);

    static native boolean flush(long handle, long timeoutMs);

    static native Stats stats(long handle);

    static native void close(long handle);

    static native void destroy(long handle);

    static native void setValueStore(long handle, String storeName, long capacity);

    static native long storeOpen(String name);

    static native byte[] storeGet(long storeHandle, String key);

    static native void storeClose(long storeHandle);

    static native void storeDestroy(long storeHandle);

    static native boolean storeUnlink(String name);

    static native long recordTo(long handle, String url);

    static native long[] recorderStats(long recorder);

    static native boolean recorderFlush(long recorder, long timeoutMs);

    static native void recorderClose(long recorder);

    static native void recorderDestroy(long recorder);
}
