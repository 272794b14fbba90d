using System;

namespace MemWatch
{
    /// <summary>How a watcher detects writes.</summary>
    public enum Backend
    {
        /// <summary>
        /// The best mechanism available here: writewatch where the engine and kernel
        /// have it, else protect, else poll. <see cref="WatcherStats.Backend"/> tells which.
        /// </summary>
        Auto,
        /// <summary>
        /// mprotect + SIGSEGV handler: knows the writing thread. A system call that
        /// writes into a watched page fails with EFAULT instead of faulting.
        /// </summary>
        Protect,
        /// <summary>
        /// userfaultfd write-protection (Linux 6.7+): no signals, system calls may
        /// write watched memory, no writer thread. Throws
        /// <see cref="MemWatchNotSupportedException"/> where the kernel or the engine lacks it.
        /// </summary>
        WriteWatch,
        /// <summary>Snapshot and hash every poll interval; works on any memory.</summary>
        Poll,
    }

    /// <summary>Settings of one <see cref="MemoryWatcher"/>. Null properties keep the engine's defaults.</summary>
    public sealed class WatcherOptions
    {
        /// <summary>Detection mechanism; default <see cref="MemWatch.Backend.Auto"/>.</summary>
        public Backend Backend { get; set; }

        /// <summary>
        /// How long a page stays writable after its first write before it is
        /// re-protected and diffed (protect backend). Whole milliseconds, rounded up (at least 1 ms);
        /// null = engine default (5 ms).
        /// </summary>
        public TimeSpan? WritableWindow { get; set; }

        /// <summary>How often the poll backend hashes its regions (at least 1 ms, rounded up); null = engine default (100 ms).</summary>
        public TimeSpan? PollInterval { get; set; }

        /// <summary>Events carry whole old/new values for regions of at most this many bytes; null = engine default (4096).</summary>
        public long? MaxValueBytes { get; set; }

        /// <summary>Bytes of old/new preview in every event; null = engine default (256).</summary>
        public long? PreviewBytes { get; set; }

        /// <summary>Capacity of the process-wide fault ring, used when the engine starts; null = engine default (32 768).</summary>
        public long? RingCapacity { get; set; }

        /// <summary>Keep a copy of each region to report old values and exact ranges; null = engine default (true).</summary>
        public bool? Snapshots { get; set; }

        /// <summary>
        /// Locate every writer: each event's <see cref="ChangeEvent.Where"/> names the writing
        /// thread, function, file and line and carries its stack. <see cref="MemWatch.Backend.Auto"/>
        /// then picks protect; WriteWatch and Poll are refused (they never see the writer).
        /// Only the first write to a page in its writable window is located
        /// (<see cref="Where.UnattributedFaults"/> counts the others). Null = off.
        /// </summary>
        public bool? LocateWriters { get; set; }

        /// <summary>With <see cref="LocateWriters"/>: frames captured per located write, 1..32; null = 8.</summary>
        public int? StackDepth { get; set; }

        /// <summary>Lower-case backend name used by the C ABI.</summary>
        internal static string BackendName(Backend b)
        {
            switch (b)
            {
                case Backend.Auto: return "auto";
                case Backend.Protect: return "protect";
                case Backend.WriteWatch: return "writewatch";
                case Backend.Poll: return "poll";
                default:
                    throw new ArgumentOutOfRangeException("options", b, "unknown backend " + (int)b);
            }
        }

        internal static uint Millis(TimeSpan t, string name, uint min)
        {
            if (t < TimeSpan.Zero)
                throw new ArgumentOutOfRangeException("options", t, name + " must not be negative");
            double ms = Math.Ceiling(t.TotalMilliseconds);
            if (ms < min)
                throw new ArgumentOutOfRangeException("options", t, name + " must be at least " + min + " ms");
            if (ms > uint.MaxValue)
                throw new ArgumentOutOfRangeException("options", t, name + " is too long");
            return (uint)ms;
        }

        internal static ulong Count(long v, string name, long min)
        {
            if (v < min)
                throw new ArgumentOutOfRangeException("options", v, name + " must be at least " + min);
            return (ulong)v;
        }

        /// <summary>Fills a native options struct (backend string excluded).</summary>
        internal void Apply(ref Native.Options o)
        {
            if (WritableWindow.HasValue) o.writable_window_ms = Millis(WritableWindow.Value, "WritableWindow", 1);
            if (PollInterval.HasValue) o.poll_interval_ms = Millis(PollInterval.Value, "PollInterval", 1);
            if (MaxValueBytes.HasValue) o.max_value_bytes = Count(MaxValueBytes.Value, "MaxValueBytes", 0);
            if (PreviewBytes.HasValue) o.preview_bytes = Count(PreviewBytes.Value, "PreviewBytes", 0);
            if (RingCapacity.HasValue) o.ring_capacity = Count(RingCapacity.Value, "RingCapacity", 1);
            if (Snapshots.HasValue) o.snapshots = Snapshots.Value ? 1 : 0;
            if (LocateWriters.HasValue) o.locate_writers = LocateWriters.Value ? 1 : 0;
            if (StackDepth.HasValue)
            {
                if (StackDepth.Value < 1 || StackDepth.Value > 32)
                    throw new ArgumentOutOfRangeException("options", StackDepth.Value, "StackDepth must be 1..32");
                o.stack_depth = (uint)StackDepth.Value;
            }
            o.adapter_id = Native.MEMWATCH_ADAPTER_CSHARP;
        }
    }

    /// <summary>Counters of one watcher; <see cref="Faults"/>, <see cref="DroppedWheres"/> and <see cref="ProtectedPages"/> are process-wide.</summary>
    public sealed class WatcherStats
    {
        /// <summary>Backend in use: "protect", "poll", ... ("none" before the first region).</summary>
        public string Backend { get; internal set; }

        /// <summary>Why a better backend was not used; empty when the preferred one works.</summary>
        public string BackendReason { get; internal set; }

        /// <summary>Regions this watcher watches.</summary>
        public long Regions { get; internal set; }

        /// <summary>Pages the engine keeps protected for all watchers (protect backend).</summary>
        public long ProtectedPages { get; internal set; }

        /// <summary>Write faults handled by the engine since it started (all watchers).</summary>
        public long Faults { get; internal set; }

        /// <summary>Events this watcher produced.</summary>
        public long Events { get; internal set; }

        /// <summary>Faults whose writer information was dropped because the ring was full (the change never is).</summary>
        public long DroppedWheres { get; internal set; }

        /// <summary>Native bytes held for this watcher's regions (metadata plus snapshots).</summary>
        public long NativeBytes { get; internal set; }

        /// <summary>Of <see cref="NativeBytes"/>, the bytes that are snapshots.</summary>
        public long SnapshotBytes { get; internal set; }

        /// <summary>Events waiting for <see cref="MemoryWatcher.CheckChanges()"/> or for delivery to handlers.</summary>
        public long PendingEvents { get; internal set; }

        /// <summary>Handler invocations that threw an exception.</summary>
        public long CallbackErrors { get; internal set; }

        /// <summary>Median first-write-to-delivery latency of delivered events, nanoseconds.</summary>
        public long LatencyP50Ns { get; internal set; }

        /// <summary>99th percentile first-write-to-delivery latency, nanoseconds.</summary>
        public long LatencyP99Ns { get; internal set; }

        /// <summary>Regions userfaultfd refused under writewatch, watched by protect instead.</summary>
        public long FallbackRegions { get; internal set; }

        /// <summary>Regions dropped because their memory was unmapped while watched (process-wide).</summary>
        public long GoneRegions { get; internal set; }

        /// <summary>Regions in shared memory watched with protect or writewatch, which cannot see other processes' writes (reason in <see cref="BackendReason"/>).</summary>
        public long SharedRegions { get; internal set; }

        /// <summary>Protect pages that could not be made read-only again (near vm.max_map_count; polled instead, no write missed; process-wide).</summary>
        public long ReprotectFailures { get; internal set; }

        /// <summary>Changes merged into an event already pending for the same region because the queue held 1024 events (see <see cref="ChangeEvent.Coalesced"/>).</summary>
        public long CoalescedEvents { get; internal set; }

        /// <summary>Pages written nonstop that are left writable and polled every poll interval instead, their writer not located (process-wide; 0 when nothing is written nonstop).</summary>
        public long HotPages { get; internal set; }

        /// <summary>All counters on one line.</summary>
        public override string ToString()
        {
            return "backend=" + Backend + " regions=" + Regions + " events=" + Events + " faults=" + Faults
                + " pending=" + PendingEvents + " callback_errors=" + CallbackErrors
                + " protected_pages=" + ProtectedPages + " native_bytes=" + NativeBytes;
        }
    }
}
