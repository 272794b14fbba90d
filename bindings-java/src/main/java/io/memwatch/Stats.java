package io.memwatch;

/**
 * A snapshot of one watcher's counters, from {@link MemoryWatcher#getStats()}.
 *
 * <p>Counts include the watcher's {@code byte[]} regions (watched by polling).
 * {@link #getFaults()}, {@link #getDroppedWheres()}, {@link #getGoneRegions()} and
 * {@link #getProtectedPages()} are engine-wide: they cover every watcher in the process.
 */
public final class Stats {
    // Set by the native library by name, one per field of the engine's stats
    // (fallback_regions -> fallbackRegions): a field added to the engine needs
    // only its field and getter here.
    private String backend;
    private String backendReason;
    private long regions;
    private long protectedPages;
    private long faults;
    private long events;
    private long fallbackRegions;
    private long sharedRegions;
    private long goneRegions;
    private long reprotectFailures;
    private long droppedWheres;
    private long nativeBytes;
    private long snapshotBytes;
    private long pendingEvents;
    private long coalescedEvents;
    private long callbackErrors;
    private long latencyP50Ns;
    private long latencyP99Ns;
    private long hotPages;

    /** Called by the native library only, which then sets every field by its name. */
    Stats() {
    }

    /**
     * The backend this watcher's direct-memory regions use (never {@link Backend#AUTO}).
     *
     * @return the backend in use
     */
    public Backend getBackend() {
        return Backend.fromName(backend);
    }

    /**
     * Why a better backend was not used; empty when the preferred one works.
     *
     * @return the reason, or an empty string
     */
    public String getBackendReason() {
        return backendReason;
    }

    /**
     * Regions this watcher watches (direct memory and {@code byte[]}).
     *
     * @return the number of regions
     */
    public long getRegions() {
        return regions;
    }

    /**
     * Pages the engine keeps protected for all watchers (protect backend).
     *
     * @return the number of protected pages
     */
    public long getProtectedPages() {
        return protectedPages;
    }

    /**
     * Write faults the engine handled since it started (all watchers).
     *
     * @return the fault count
     */
    public long getFaults() {
        return faults;
    }

    /**
     * Events this watcher produced.
     *
     * @return the event count
     */
    public long getEvents() {
        return events;
    }

    /**
     * Regions of a writewatch watcher that userfaultfd refused and that use protect instead (the
     * reason is in {@link #getBackendReason()}).
     *
     * @return the number of fallback regions
     */
    public long getFallbackRegions() {
        return fallbackRegions;
    }

    /**
     * Regions dropped because their memory was unmapped while watched (engine-wide).
     *
     * @return the number of regions whose memory went away
     */
    public long getGoneRegions() {
        return goneRegions;
    }

    /**
     * Regions in shared memory (MAP_SHARED) watched with protect or writewatch, which cannot see
     * writes by other processes (the reason is in {@link #getBackendReason()}).
     *
     * @return the number of such regions
     */
    public long getSharedRegions() {
        return sharedRegions;
    }

    /**
     * Times a protect page could not be made read-only again (near vm.max_map_count), engine-wide.
     * No write is missed for it: the page is polled until it can be re-armed.
     *
     * @return the number of failed re-protects
     */
    public long getReprotectFailures() {
        return reprotectFailures;
    }

    /**
     * Changes merged into an event already pending for the same region, because the queue held
     * 1024 events. No change is lost: the merged event carries them ({@link ChangeEvent#getCoalesced()}).
     *
     * @return the number of merged changes
     */
    public long getCoalescedEvents() {
        return coalescedEvents;
    }

    /**
     * Faults whose writer thread and address were dropped because the fault ring was full
     * (engine-wide). The change itself is never dropped.
     *
     * @return the number of dropped "where" records
     */
    public long getDroppedWheres() {
        return droppedWheres;
    }

    /**
     * Native bytes held for this watcher's regions: metadata, snapshots and {@code byte[]} mirrors.
     *
     * @return native bytes in use
     */
    public long getNativeBytes() {
        return nativeBytes;
    }

    /**
     * The part of {@link #getNativeBytes()} that is snapshots.
     *
     * @return snapshot bytes
     */
    public long getSnapshotBytes() {
        return snapshotBytes;
    }

    /**
     * Events waiting for {@link MemoryWatcher#checkChanges()} or for the callback.
     *
     * @return the number of pending events
     */
    public long getPendingEvents() {
        return pendingEvents;
    }

    /**
     * Callback invocations that threw.
     *
     * @return the number of callback errors
     */
    public long getCallbackErrors() {
        return callbackErrors;
    }

    /**
     * Median first-write-to-delivery latency of delivered events, in nanoseconds.
     *
     * @return the median latency
     */
    public long getLatencyP50Ns() {
        return latencyP50Ns;
    }

    /**
     * 99th percentile first-write-to-delivery latency, in nanoseconds.
     *
     * @return the 99th percentile latency
     */
    public long getLatencyP99Ns() {
        return latencyP99Ns;
    }

    /**
     * Pages written nonstop that the engine left writable and polls every poll
     * interval instead, their writer not located (engine-wide; 0 when nothing is
     * written nonstop). They are protected again once quiet.
     *
     * @return the number of hot pages
     */
    public long getHotPages() {
        return hotPages;
    }

    /**
     * All counters on one line.
     *
     * @return a human-readable summary
     */
    @Override
    public String toString() {
        return "Stats{backend=" + backend
                + (backendReason.isEmpty() ? "" : " (" + backendReason + ")")
                + ", regions=" + regions + ", protectedPages=" + protectedPages + ", faults=" + faults
                + ", events=" + events + ", fallbackRegions=" + fallbackRegions + ", goneRegions=" + goneRegions
                + ", droppedWheres=" + droppedWheres + ", nativeBytes=" + nativeBytes
                + ", snapshotBytes=" + snapshotBytes + ", pendingEvents=" + pendingEvents
                + ", callbackErrors=" + callbackErrors + ", latencyP50Ns=" + latencyP50Ns
                + ", latencyP99Ns=" + latencyP99Ns + ", hotPages=" + hotPages + "}";
    }
}
