package io.memwatch;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * One detected change to one watched region. Immutable; byte-array getters return copies.
 *
 * <p>Events are delivered exactly once: to the callback set with
 * {@link MemoryWatcher#setCallback(java.util.function.Consumer)}, or, when none is set, by the
 * next {@link MemoryWatcher#checkChanges()}.
 */
public final class ChangeEvent {
    private final long seq;
    private final long timestampNs;
    private final int adapterId;
    private final int regionId;
    private final String variableName;
    private final int threadId;
    private final long faultIp;
    private final String file;
    private final String function;
    private final int line;
    private final long howBig;
    private final List<ByteRange> changedRanges;
    private final byte[] oldPreview;
    private final byte[] newPreview;
    private final byte[] oldValue;
    private final byte[] newValue;
    private final String storageKeyOld;
    private final String storageKeyNew;
    private final String metadata;
    private final int coalesced;
    private final RawWhere rawWhere;
    private Where where;

    /**
     * The native library's where beyond the event's own fields: the stack as parallel arrays
     * (module, function, file per frame; ip, moduleOffset, line, inlined per frame), turned into
     * a {@link Where} on first access.
     */
    static final class RawWhere {
        final String threadName;
        final String module;
        final long moduleOffset;
        final int unattributedFaults;
        final String noJavaFramesReason;
        final String[] strings;
        final long[] numbers;

        /** Called by the native library only. */
        RawWhere(String threadName, String module, long moduleOffset, int unattributedFaults,
                String noJavaFramesReason, String[] strings, long[] numbers) {
            this.threadName = threadName;
            this.module = module;
            this.moduleOffset = moduleOffset;
            this.unattributedFaults = unattributedFaults;
            this.noJavaFramesReason = noJavaFramesReason;
            this.strings = strings;
            this.numbers = numbers;
        }
    }

    /** Called by the native library only; {@code ranges} holds (offset, length) pairs. */
    ChangeEvent(long seq, long timestampNs, int adapterId, int regionId, String variableName,
            int threadId, long faultIp, String file, String function, int line, long howBig,
            long[] ranges, byte[] oldPreview, byte[] newPreview, byte[] oldValue, byte[] newValue,
            String storageKeyOld, String storageKeyNew, String metadata, int coalesced, RawWhere rawWhere) {
        this.seq = seq;
        this.timestampNs = timestampNs;
        this.adapterId = adapterId;
        this.regionId = regionId;
        this.variableName = variableName;
        this.threadId = threadId;
        this.faultIp = faultIp;
        this.file = file;
        this.function = function;
        this.line = line;
        this.howBig = howBig;
        List<ByteRange> list = new ArrayList<>(ranges.length / 2);
        for (int i = 0; i + 1 < ranges.length; i += 2) {
            list.add(new ByteRange(ranges[i], ranges[i + 1]));
        }
        this.changedRanges = Collections.unmodifiableList(list);
        this.oldPreview = oldPreview;
        this.newPreview = newPreview;
        this.oldValue = oldValue;
        this.newValue = newValue;
        this.storageKeyOld = storageKeyOld;
        this.storageKeyNew = storageKeyNew;
        this.metadata = metadata;
        this.coalesced = coalesced;
        this.rawWhere = rawWhere;
    }

    /**
     * Who wrote (watchers with {@link WatcherOptions#locateWriters(boolean)}): thread, named
     * frame, Java and native stack. For other events (other backends, {@code byte[]} regions,
     * writes after the first to a page in its writable window) only the thread id and fault
     * address may be set, and the stack is empty.
     *
     * @return the writer's location (never null)
     */
    public synchronized Where where() {
        if (where == null) {
            RawWhere r = rawWhere;
            List<Frame> stack = new ArrayList<>();
            if (r != null) {
                for (int i = 0; i < r.strings.length / 3; i++) {
                    long[] n = r.numbers;
                    stack.add(new Frame(n[4 * i], r.strings[3 * i], n[4 * i + 1], r.strings[3 * i + 1],
                            r.strings[3 * i + 2], (int) n[4 * i + 2], n[4 * i + 3] != 0));
                }
            }
            where = new Where(getThreadId(), r == null ? "" : r.threadName, getFaultIp(),
                    r == null ? "" : r.module, r == null ? 0 : r.moduleOffset, file, function, line, stack,
                    r == null ? 0 : r.unattributedFaults, r == null ? "" : r.noJavaFramesReason);
        }
        return where;
    }

    /**
     * Process-wide sequence number, increasing in detection order.
     *
     * @return the sequence number
     */
    public long getSeq() {
        return seq;
    }

    /**
     * When the change happened: {@code CLOCK_MONOTONIC} nanoseconds of the first write seen
     * (protect backend) or of detection (poll backend, {@code byte[]} regions). Comparable with
     * {@link System#nanoTime()} on Linux HotSpot, which reads the same clock.
     *
     * @return monotonic timestamp in nanoseconds
     */
    public long getTimestampNs() {
        return timestampNs;
    }

    /**
     * Which language adapter made the watcher; 4 for Java.
     *
     * @return the adapter id
     */
    public int getAdapterId() {
        return adapterId;
    }

    /**
     * The id {@code watch(...)} returned for the region that changed.
     *
     * @return the region id
     */
    public int getRegionId() {
        return regionId;
    }

    /**
     * The name given at watch time.
     *
     * @return the variable name
     */
    public String getVariableName() {
        return variableName;
    }

    /**
     * Kernel thread id ({@code gettid}) of the thread that wrote first; empty for the poll
     * backend, for {@code byte[]} regions, or when the engine's fault ring was full.
     *
     * @return the writer's kernel thread id, if known
     */
    public OptionalInt getThreadId() {
        return threadId == 0 ? OptionalInt.empty() : OptionalInt.of(threadId);
    }

    /**
     * Instruction pointer of the first write (protect backend); empty when unknown.
     *
     * @return the faulting instruction address, if known
     */
    public OptionalLong getFaultIp() {
        return faultIp == 0 ? OptionalLong.empty() : OptionalLong.of(faultIp);
    }

    /**
     * Source file of the write ({@link Where#file()}); empty unless writers are located.
     *
     * @return the source file, or an empty string
     */
    public String getFile() {
        return file;
    }

    /**
     * Function that wrote ({@link Where#function()}); empty unless writers are located.
     *
     * @return the function name, or an empty string
     */
    public String getFunction() {
        return function;
    }

    /**
     * Source line of the write ({@link Where#line()}); 0 when unknown.
     *
     * @return the line number, or 0
     */
    public int getLine() {
        return line;
    }

    /**
     * Size of the region in bytes.
     *
     * @return the region size
     */
    public long getHowBig() {
        return howBig;
    }

    /**
     * The changed byte ranges, relative to the start of the region, in ascending offset order.
     *
     * @return an unmodifiable list of ranges
     */
    public List<ByteRange> getChangedRanges() {
        return changedRanges;
    }

    /**
     * The first {@code previewBytes} of the region before the change (empty without snapshots).
     *
     * @return a copy of the old preview
     */
    public byte[] getOldPreview() {
        return oldPreview.clone();
    }

    /**
     * The first {@code previewBytes} of the region after the change.
     *
     * @return a copy of the new preview
     */
    public byte[] getNewPreview() {
        return newPreview.clone();
    }

    /**
     * The whole old value, or {@code null} when the region is larger than
     * {@code maxValueBytes} (see {@link #getStorageKeyOld()}) or snapshots are off.
     *
     * @return a copy of the old value, or null
     */
    public byte[] getOldValue() {
        return oldValue == null ? null : oldValue.clone();
    }

    /**
     * The whole new value, or {@code null} when the region is larger than {@code maxValueBytes}
     * (see {@link #getStorageKeyNew()}).
     *
     * @return a copy of the new value, or null
     */
    public byte[] getNewValue() {
        return newValue == null ? null : newValue.clone();
    }

    /**
     * Key of the whole old value in the watcher's value store, for a region larger than
     * {@code maxValueBytes} while a value store is set ({@link MemoryWatcher#setValueStore}) and
     * the store still holds that value; null otherwise. Read it with {@link ValueStore#get}.
     * Keys look like {@code memwatch/4/<regionId>/<epoch>}; this is the previous event's
     * {@link #getStorageKeyNew()}.
     *
     * @return the store key, or null
     */
    public String getStorageKeyOld() {
        return storageKeyOld;
    }

    /**
     * Key of the whole new value in the watcher's value store, for a region larger than
     * {@code maxValueBytes} while a value store is set ({@link MemoryWatcher#setValueStore});
     * null otherwise, or if the store refused the value. Read it with {@link ValueStore#get}.
     *
     * @return the store key, or null
     */
    public String getStorageKeyNew() {
        return storageKeyNew;
    }

    /**
     * The metadata given at watch time, or null.
     *
     * @return the metadata, or null
     */
    public String getMetadata() {
        return metadata;
    }

    /**
     * The number of changes this event stands for: 1, or more when later changes of the region
     * were merged into it while it waited in a full queue (1024 events). Then the old values are
     * the first change's, the new values the last's, and the ranges their union.
     *
     * @return the number of merged changes, at least 1
     */
    public int getCoalesced() {
        return coalesced;
    }

    /**
     * A one-line description with the name, ranges and (short) old and new values in hex.
     *
     * @return a human-readable summary
     */
    @Override
    public String toString() {
        HexFormat hex = HexFormat.of();
        byte[] o = oldValue != null ? oldValue : oldPreview;
        byte[] n = newValue != null ? newValue : newPreview;
        return "ChangeEvent{seq=" + seq + ", region=" + regionId + ", name=" + variableName
                + ", ranges=" + changedRanges + ", old=" + hex.formatHex(o, 0, Math.min(o.length, 32))
                + ", new=" + hex.formatHex(n, 0, Math.min(n.length, 32))
                + (threadId != 0 ? ", tid=" + threadId : "") + "}";
    }
}
