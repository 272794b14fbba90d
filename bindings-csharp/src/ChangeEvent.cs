using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace MemWatch
{
    /// <summary>A run of changed bytes, relative to the start of the region.</summary>
    public struct ByteRange : IEquatable<ByteRange>
    {
        /// <summary>Offset of the first changed byte from the start of the region.</summary>
        public long Offset { get; private set; }

        /// <summary>Number of changed bytes.</summary>
        public long Length { get; private set; }

        /// <summary>Creates a range.</summary>
        /// <param name="offset">Offset from the start of the region.</param>
        /// <param name="length">Number of bytes.</param>
        public ByteRange(long offset, long length) : this()
        {
            Offset = offset;
            Length = length;
        }

        /// <summary>Whether both ranges have the same offset and length.</summary>
        public bool Equals(ByteRange other) { return Offset == other.Offset && Length == other.Length; }

        /// <summary>Whether <paramref name="obj"/> is an equal <see cref="ByteRange"/>.</summary>
        public override bool Equals(object obj) { return obj is ByteRange && Equals((ByteRange)obj); }

        /// <summary>Hash of offset and length.</summary>
        public override int GetHashCode() { return Offset.GetHashCode() * 31 + Length.GetHashCode(); }

        /// <summary>"[offset, length]".</summary>
        public override string ToString() { return "[" + Offset + ", " + Length + "]"; }
    }

    /// <summary>
    /// One detected change to one watched region. Every array is this event's own
    /// copy: keep it as long as you like.
    /// </summary>
    public sealed class ChangeEvent : EventArgs
    {
        /// <summary>Process-wide sequence number, increasing in detection order.</summary>
        public long Seq { get; private set; }

        /// <summary>CLOCK_MONOTONIC nanoseconds of the first write seen (protect) or of detection (poll).</summary>
        public long TimestampNs { get; private set; }

        /// <summary>Which language binding made the watcher (5 for C#).</summary>
        public int AdapterId { get; private set; }

        /// <summary>The id <see cref="MemoryWatcher.Watch(byte[], string, string)"/> returned for the region.</summary>
        public int RegionId { get; private set; }

        /// <summary>The name given when the region was watched.</summary>
        public string VariableName { get; private set; }

        /// <summary>Kernel thread id (gettid) of the writing thread; null when unknown (poll backend).</summary>
        public int? ThreadId { get; private set; }

        /// <summary>Instruction pointer of the write; null when unknown (poll backend).</summary>
        public ulong? FaultIp { get; private set; }

        /// <summary>Source file of the write; empty until symbolization exists.</summary>
        public string File { get; private set; }

        /// <summary>Function of the write; empty until symbolization exists.</summary>
        public string Function { get; private set; }

        /// <summary>Source line of the write; 0 when unknown.</summary>
        public int Line { get; private set; }

        /// <summary>Size of the region in bytes.</summary>
        public long HowBig { get; private set; }

        /// <summary>The changed byte ranges, in ascending offset order.</summary>
        public IReadOnlyList<ByteRange> ChangedRanges { get; private set; }

        /// <summary>First bytes of the region before the change (empty when snapshots are off).</summary>
        public byte[] OldPreview { get; private set; }

        /// <summary>First bytes of the region after the change.</summary>
        public byte[] NewPreview { get; private set; }

        /// <summary>The whole old value, or null when the region is larger than MaxValueBytes or snapshots are off.</summary>
        public byte[] OldValue { get; private set; }

        /// <summary>The whole new value, or null when the region is larger than MaxValueBytes.</summary>
        public byte[] NewValue { get; private set; }

        /// <summary>
        /// For a region larger than MaxValueBytes while a value store is set
        /// (<see cref="MemoryWatcher.SetValueStore"/>): the key under which the store holds
        /// the old value ("memwatch/{adapter_id}/{region_id}/{epoch}"); read it with
        /// <see cref="MemStore.Get(string)"/>. Null otherwise, and once the store no longer
        /// holds it (evicted) or without snapshots.
        /// </summary>
        public string StorageKeyOld { get; private set; }

        /// <summary>
        /// The key of the new value in the value store, under the same conditions as
        /// <see cref="StorageKeyOld"/>; null when the store refused it.
        /// </summary>
        public string StorageKeyNew { get; private set; }

        /// <summary>The metadata given when the region was watched, or null.</summary>
        public string Metadata { get; private set; }

        /// <summary>
        /// The number of changes this event stands for: 1, or more when later changes of the
        /// region were merged into it while it waited in a full queue (1024 events). Then the old
        /// values are the first change's, the new values the last's, and the ranges their union.
        /// </summary>
        public int Coalesced { get; private set; }

        private ChangeEvent() { }

        /// <summary>Copies a native memwatch_change_event_t.</summary>
        internal static ChangeEvent FromNative(IntPtr p)
        {
            Native.Event n = (Native.Event)Marshal.PtrToStructure(p, typeof(Native.Event));
            var e = new ChangeEvent();
            e.Seq = unchecked((long)n.seq);
            e.TimestampNs = unchecked((long)n.timestamp_ns);
            e.AdapterId = unchecked((int)n.adapter_id);
            e.RegionId = unchecked((int)n.region_id);
            e.VariableName = Utf8.FromNative(n.variable_name) ?? string.Empty;
            e.ThreadId = n.thread_id == 0 ? (int?)null : unchecked((int)n.thread_id);
            e.FaultIp = n.fault_ip == 0 ? (ulong?)null : n.fault_ip;
            e.File = Utf8.FromNative(n.file) ?? string.Empty;
            e.Function = Utf8.FromNative(n.function) ?? string.Empty;
            e.Line = unchecked((int)n.line);
            e.HowBig = checked((long)n.how_big.ToUInt64());
            e.ChangedRanges = ReadRanges(n.changed_ranges, n.changed_range_count);
            e.OldPreview = ReadBytes(n.old_preview, n.old_preview_len) ?? new byte[0];
            e.NewPreview = ReadBytes(n.new_preview, n.new_preview_len) ?? new byte[0];
            e.OldValue = ReadBytes(n.old_value, n.old_value_len);
            e.NewValue = ReadBytes(n.new_value, n.new_value_len);
            e.StorageKeyOld = Utf8.FromNative(n.storage_key_old);
            e.StorageKeyNew = Utf8.FromNative(n.storage_key_new);
            e.Metadata = Utf8.FromNative(n.metadata);
            e.Coalesced = unchecked((int)n.coalesced);
            return e;
        }

        private static byte[] ReadBytes(IntPtr p, UIntPtr len)
        {
            if (p == IntPtr.Zero) return null;
            int n = checked((int)len.ToUInt64());
            var buf = new byte[n];
            if (n > 0) Marshal.Copy(p, buf, 0, n);
            return buf;
        }

        private static IReadOnlyList<ByteRange> ReadRanges(IntPtr p, UIntPtr count)
        {
            int n = checked((int)count.ToUInt64());
            var ranges = new ByteRange[n];
            int size = Marshal.SizeOf(typeof(Native.Range));
            for (int i = 0; i < n; i++)
            {
                var r = (Native.Range)Marshal.PtrToStructure(new IntPtr(p.ToInt64() + (long)i * size), typeof(Native.Range));
                ranges[i] = new ByteRange(checked((long)r.offset.ToUInt64()), checked((long)r.length.ToUInt64()));
            }
            return Array.AsReadOnly(ranges);
        }

        /// <summary>A one-line description: name, region, ranges and thread.</summary>
        public override string ToString()
        {
            var sb = new StringBuilder();
            sb.Append("ChangeEvent #").Append(Seq).Append(' ').Append(VariableName)
              .Append(" (region ").Append(RegionId).Append(", ").Append(HowBig).Append(" bytes) changed ");
            for (int i = 0; i < ChangedRanges.Count; i++)
            {
                if (i > 0) sb.Append(',');
                sb.Append(ChangedRanges[i]);
            }
            if (ThreadId.HasValue) sb.Append(" by thread ").Append(ThreadId.Value);
            return sb.ToString();
        }
    }
}
