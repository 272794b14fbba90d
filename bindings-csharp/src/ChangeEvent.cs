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

    /// <summary>One frame of a writer's stack (<see cref="Where.Stack"/>, innermost first).</summary>
    public sealed class Frame
    {
        /// <summary>Instruction address: the write itself for the first native frame, a return address - 1 for callers.</summary>
        public ulong Ip { get; private set; }

        /// <summary>Executable or shared library holding <see cref="Ip"/>; empty for managed (JIT) code and when unknown.</summary>
        public string Module { get; private set; }

        /// <summary><see cref="Ip"/> minus the module's load address (for a managed frame: the offset in its method's native code).</summary>
        public ulong ModuleOffset { get; private set; }

        /// <summary>Function or method; empty without symbols.</summary>
        public string Function { get; private set; }

        /// <summary>Source file; empty without debug info.</summary>
        public string File { get; private set; }

        /// <summary>Source line; 0 when unknown.</summary>
        public int Line { get; private set; }

        /// <summary>This frame was inlined into the next one (same <see cref="Ip"/>).</summary>
        public bool Inlined { get; private set; }

        private Frame() { }

        internal static Frame FromNative(Native.Frame f)
        {
            string function, file;
            int line;
            ulong offset;
            if (f.module == IntPtr.Zero || Marshal.ReadByte(f.module) == 0)
            {
                if ((f.function == IntPtr.Zero || Marshal.ReadByte(f.function) == 0)
                    && MonoFrames.TryName(f.ip, out function, out file, out line, out offset))
                {
                    // A managed frame (JIT code): named here, on a thread attached to Mono.
                    return new Frame { Ip = f.ip, Module = string.Empty, ModuleOffset = offset, Function = function, File = file, Line = line };
                }
            }
            return new Frame
            {
                Ip = f.ip,
                Module = Utf8.FromNative(f.module) ?? string.Empty,
                ModuleOffset = f.module_offset,
                Function = Utf8.FromNative(f.function) ?? string.Empty,
                File = Utf8.FromNative(f.file) ?? string.Empty,
                Line = unchecked((int)f.line),
                Inlined = f.inlined != 0,
            };
        }

        /// <summary>"function (file:line)", or "module+0xoffset" without symbols.</summary>
        public override string ToString()
        {
            if (Function.Length == 0) return Module + "+0x" + ModuleOffset.ToString("x");
            return File.Length == 0 ? Function : Function + " (" + File + ":" + Line + ")";
        }
    }

    /// <summary>
    /// Where a change was made, as far as the backend can tell. With
    /// <see cref="WatcherOptions.LocateWriters"/> the file, function and line are the user
    /// frame's: the innermost frame outside memwatch and memcpy-style helpers (those stay
    /// in <see cref="Stack"/>).
    /// </summary>
    public sealed class Where
    {
        private static readonly IReadOnlyList<Frame> NoFrames = Array.AsReadOnly(new Frame[0]);

        /// <summary>Kernel thread id (gettid) of the writing thread; null when unknown (poll backend).</summary>
        public int? ThreadId { get; private set; }

        /// <summary>Name of the writing thread; empty unless located.</summary>
        public string ThreadName { get; private set; }

        /// <summary>Instruction pointer of the write; null when unknown.</summary>
        public ulong? FaultIp { get; private set; }

        /// <summary>Module of the user frame; empty unless located.</summary>
        public string Module { get; private set; }

        /// <summary>Offset of the user frame in <see cref="Module"/>.</summary>
        public ulong ModuleOffset { get; private set; }

        /// <summary>Source file of the user frame; empty unless located or without debug info.</summary>
        public string File { get; private set; }

        /// <summary>Function of the user frame; empty unless located.</summary>
        public string Function { get; private set; }

        /// <summary>Source line of the user frame; 0 when unknown.</summary>
        public int Line { get; private set; }

        /// <summary>First writes to other pages of the region merged into this event without a location of their own.</summary>
        public int UnattributedFaults { get; private set; }

        /// <summary>The writer's stack, innermost first; empty unless located.</summary>
        public IReadOnlyList<Frame> Stack { get; private set; }

        private Where() { }

        internal static Where FromNative(ref Native.Event n)
        {
            var w = new Where
            {
                ThreadId = n.thread_id == 0 ? (int?)null : unchecked((int)n.thread_id),
                FaultIp = n.fault_ip == 0 ? (ulong?)null : n.fault_ip,
                File = Utf8.FromNative(n.file) ?? string.Empty,
                Function = Utf8.FromNative(n.function) ?? string.Empty,
                Line = unchecked((int)n.line),
                ThreadName = string.Empty,
                Module = string.Empty,
                Stack = NoFrames,
            };
            if (n.location == IntPtr.Zero) return w;
            var loc = (Native.Where)Marshal.PtrToStructure(n.location, typeof(Native.Where));
            w.ThreadName = Utf8.FromNative(loc.thread_name) ?? string.Empty;
            w.Module = Utf8.FromNative(loc.module) ?? string.Empty;
            w.ModuleOffset = loc.module_offset;
            w.UnattributedFaults = unchecked((int)loc.unattributed_faults);
            int count = checked((int)loc.frame_count);
            var frames = new Frame[count];
            int size = Marshal.SizeOf(typeof(Native.Frame));
            for (int i = 0; i < count; i++)
            {
                var f = (Native.Frame)Marshal.PtrToStructure(new IntPtr(loc.frames.ToInt64() + (long)i * size), typeof(Native.Frame));
                frames[i] = Frame.FromNative(f);
            }
            w.Stack = Array.AsReadOnly(frames);
            Frame user = UserFrame(frames);
            if (user != null)
            {
                w.File = user.File;
                w.Function = user.Function;
                w.Line = user.Line;
                w.Module = user.Module;
                w.ModuleOffset = user.ModuleOffset;
            }
            return w;
        }

        /// <summary>Managed helpers a user does not point at (they stay in the stack).</summary>
        private static readonly string[] HelperPrefixes =
        {
            "(wrapper ", "System.Runtime.InteropServices.Marshal:", "System.Buffer:", "System.Array:Copy ",
            "System.Span`1", "System.Runtime.CompilerServices.Unsafe:",
        };

        /// <summary>
        /// The innermost managed frame (a name, no native module) that is not a helper
        /// such as Marshal.Copy or a Mono wrapper; null without managed frames.
        /// </summary>
        private static Frame UserFrame(Frame[] frames)
        {
            foreach (Frame f in frames)
            {
                bool managed = f.Function.Length > 0 && f.Module.Length == 0;
                if (!managed) break; // managed frames come first, native ones after
                bool helper = false;
                foreach (string p in HelperPrefixes)
                    if (f.Function.StartsWith(p, StringComparison.Ordinal)) { helper = true; break; }
                if (!helper) return f;
            }
            return null;
        }

        /// <summary>"function (file:line) on thread N", or what is known of it.</summary>
        public override string ToString()
        {
            var sb = new StringBuilder();
            if (Function.Length > 0) sb.Append(Function);
            if (File.Length > 0) sb.Append(" (").Append(File).Append(':').Append(Line).Append(')');
            if (ThreadId.HasValue) sb.Append(sb.Length > 0 ? " " : "").Append("on thread ").Append(ThreadId.Value);
            if (ThreadName.Length > 0) sb.Append(" \"").Append(ThreadName).Append('"');
            return sb.ToString();
        }
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

        /// <summary>Source file of the write (<see cref="MemWatch.Where.File"/>); empty unless located.</summary>
        public string File { get; private set; }

        /// <summary>Function of the write (<see cref="MemWatch.Where.Function"/>); empty unless located.</summary>
        public string Function { get; private set; }

        /// <summary>Source line of the write (<see cref="MemWatch.Where.Line"/>); 0 when unknown.</summary>
        public int Line { get; private set; }

        /// <summary>
        /// Who wrote it and where: thread, function, file, line and stack with
        /// <see cref="WatcherOptions.LocateWriters"/>; otherwise the thread and fault IP only.
        /// Never null.
        /// </summary>
        public Where Where { get; private set; }

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
            e.Where = Where.FromNative(ref n);
            // The user frame, which skips managed helpers (Marshal.Copy) the engine cannot know.
            e.File = e.Where.File;
            e.Function = e.Where.Function;
            e.Line = e.Where.Line;
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
