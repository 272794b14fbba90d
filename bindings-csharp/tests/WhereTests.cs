// LocateWriters: ChangeEvent.Where names the writing thread and carries the
// stack (managed frames first when Mono frames are on, then native ones).

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace MemWatch.Tests
{
    public class WhereTests
    {
        private static ChangeEvent Single(IReadOnlyList<ChangeEvent> events, string what)
        {
            Assert.Equal(1, events.Count, what + ": number of events");
            return events[0];
        }

        private static string Comm(int tid)
        {
            return File.ReadAllText("/proc/self/task/" + tid + "/comm").Trim();
        }

        /// <summary>Writes one byte from native code: Marshal.Copy is a Mono icall that calls memcpy
        /// (Marshal.WriteByte would not do: the JIT inlines it into managed code).</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        private static void NativeWrite(IntPtr p, int offset, byte value)
        {
            Marshal.Copy(new[] { value }, 0, new IntPtr(p.ToInt64() + offset), 1);
        }

        private static readonly int NativeWriteLine = Line() - 3;

        /// <summary>The caller's source line, as the compiler knows it.</summary>
        private static int Line([CallerLineNumber] int line = 0) { return line; }

        private static string ThisFile([CallerFilePath] string path = "") { return path; }

        /// <summary>A managed write (JIT-compiled code); returns the line of the write.</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        private static int ManagedWrite(byte[] data, int index, byte value)
        {
            data[index] = value; return Line();
        }

        [Test]
        public void ManagedWriteNamesTheMethodFileAndLineThenItsCaller()
        {
            int page = MemoryWatcher.PageSize;
            // A large array has pages nothing else writes (Mono's large object space).
            var data = new byte[64 * page];
            using (var w = new MemoryWatcher(new WatcherOptions { LocateWriters = true }))
            {
                w.Watch(data, "big");
                int writeLine = ManagedWrite(data, 8 * page + 3, 0x42); int callLine = Line();
                ChangeEvent e = Single(w.CheckChanges(), "one managed write");
                Assert.Ranges(new[] { new ByteRange(8 * page + 3, 1) }, e.ChangedRanges, "ranges");
                Where loc = e.Where;
                Assert.Equal((int?)LibC.gettid(), loc.ThreadId, "this thread wrote");
                string writer = "MemWatch.Tests.WhereTests:ManagedWrite (byte[],int,byte)";
                string caller = "MemWatch.Tests.WhereTests:ManagedWriteNamesTheMethodFileAndLineThenItsCaller ()";
                Assert.Equal(writer, loc.Function, "the writing method (" + string.Join(" | ", loc.Stack) + ")");
                Assert.Equal(ThisFile(), loc.File, "its file");
                Assert.Equal(writeLine, loc.Line, "the line of the write");
                Assert.Equal(writer, loc.Stack[0].Function, "stack[0]");
                Assert.Equal(caller, loc.Stack[1].Function, "stack[1]: the caller");
                Assert.Equal(ThisFile(), loc.Stack[1].File, "caller's file");
                Assert.Equal(callLine, loc.Stack[1].Line, "the line of the call");
                // The innermost managed frame is the faulting instruction itself; the native
                // frames follow, from the same instruction (JIT code, named the same way).
                Assert.Equal(loc.FaultIp.Value, loc.Stack[0].Ip, "stack[0] is the write");
                Assert.Equal(1, loc.Stack.Skip(1).Count(f => f.Ip == loc.FaultIp.Value && f.Function == writer),
                    "the native view of the write follows (" + string.Join(" | ", loc.Stack) + ")");
                GC.KeepAlive(data);
            }
        }

        [Test]
        public void ManagedWriteStackDepthOneAndRepeatedWrites()
        {
            int page = MemoryWatcher.PageSize;
            var data = new byte[64 * page];
            using (var w = new MemoryWatcher(new WatcherOptions { LocateWriters = true, StackDepth = 1, WritableWindow = TimeSpan.FromMilliseconds(1) }))
            {
                w.Watch(data, "big");
                for (int i = 1; i <= 20; i++)
                {
                    int writeLine = ManagedWrite(data, (i % 8) * page, (byte)i);
                    ChangeEvent e = Single(w.CheckChanges(), "write " + i);
                    Assert.Equal(writeLine, e.Where.Line, "write " + i + ": line");
                    // StackDepth 1: one managed frame, one native frame, both the write.
                    Assert.Equal(2, e.Where.Stack.Count, "write " + i + ": " + string.Join(" | ", e.Where.Stack));
                    Assert.True(e.Where.Stack.All(f => f.Ip == e.Where.FaultIp.Value && f.Function.StartsWith("MemWatch.Tests.WhereTests:ManagedWrite ")),
                        "write " + i + ": both frames are the write in ManagedWrite");
                }
                GC.KeepAlive(data);
            }
        }

        [Test]
        public void NativeWriteIsLocatedWithThreadAndStack()
        {
            int page = MemoryWatcher.PageSize;
            using (var m = new Mapping(page))
            using (var w = new MemoryWatcher(new WatcherOptions { LocateWriters = true }))
            {
                w.Watch(m.Address, 64, "native");
                WatcherStats s = w.GetStats();
                Assert.Equal("protect", s.Backend, "auto picks protect for LocateWriters");
                Assert.True(s.BackendReason.Contains("locate_writers"), "reason says why: " + s.BackendReason);
                NativeWrite(m.Address, 5, 0x55);
                int tid = LibC.gettid();
                ChangeEvent e = Single(w.CheckChanges(), "one write");
                Assert.Ranges(new[] { new ByteRange(5, 1) }, e.ChangedRanges, "ranges");
                Where loc = e.Where;
                Assert.NotNull(loc, "Where");
                Assert.Equal((int?)tid, loc.ThreadId, "writer thread");
                Assert.Equal(Comm(tid), loc.ThreadName, "thread name");
                Assert.True(loc.FaultIp.HasValue, "fault ip known");
                Assert.Equal(e.ThreadId, loc.ThreadId, "ChangeEvent.ThreadId is Where.ThreadId");
                Assert.Equal(0, loc.UnattributedFaults, "one page, one fault");
                Assert.True(loc.Stack.Count >= 1, "a stack");
                string stack = string.Join(" | ", loc.Stack);
                Frame native0 = loc.Stack.First(f => f.Ip == loc.FaultIp.Value);
                Assert.True(native0.Module.Length > 0, "the faulting instruction is in a module: " + stack);
                Assert.True(loc.Stack[0].Function.StartsWith("(wrapper managed-to-native) System.Runtime.InteropServices.Marshal:"),
                    "the managed frames start with Marshal's icall wrapper: " + stack);
                // The user frame skips Marshal's frames: it is the method that called Marshal.Copy.
                Assert.Equal("MemWatch.Tests.WhereTests:NativeWrite (intptr,int,byte)", loc.Function, "user frame: " + stack);
                Assert.Equal(ThisFile(), loc.File, "its file");
                Assert.Equal(NativeWriteLine, loc.Line, "the line of the Marshal.Copy call");
                Assert.Equal(e.Function, loc.Function, "ChangeEvent.Function is Where.Function");
                Assert.Equal(e.Line, loc.Line, "ChangeEvent.Line is Where.Line");
            }
        }

        [Test]
        public void WriteOnAnotherThreadNamesThatThread()
        {
            int page = MemoryWatcher.PageSize;
            using (var m = new Mapping(page))
            using (var w = new MemoryWatcher(new WatcherOptions { LocateWriters = true, StackDepth = 4 }))
            {
                w.Watch(m.Address, 64, "native");
                int tid = 0;
                string comm = null;
                var t = new Thread(() =>
                {
                    tid = LibC.gettid();
                    comm = Comm(tid);
                    NativeWrite(m.Address, 1, 7);
                });
                t.Start();
                t.Join();
                ChangeEvent e = Single(w.CheckChanges(), "write on a thread");
                Assert.True(tid != LibC.gettid(), "another thread");
                Assert.Equal((int?)tid, e.Where.ThreadId, "writer thread id");
                Assert.Equal(comm, e.Where.ThreadName, "writer thread name");
            }
        }

        [Test]
        public void WithoutLocateWritersNothingIsLocated()
        {
            int page = MemoryWatcher.PageSize;
            using (var m = new Mapping(page))
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                w.Watch(m.Address, 64, "native");
                NativeWrite(m.Address, 2, 1);
                ChangeEvent e = Single(w.CheckChanges(), "one write");
                Assert.Equal((int?)LibC.gettid(), e.Where.ThreadId, "thread id is known anyway");
                Assert.Equal(0, e.Where.Stack.Count, "no stack");
                Assert.Equal("", e.Where.ThreadName, "no thread name");
                Assert.Equal("", e.Where.Function, "no function");
                Assert.Equal(0, e.Where.Line, "no line");
            }
        }

        [Test]
        public void EventBuiltOnMemwatchsWorkerNamesTheManagedWriter()
        {
            // Without CheckChanges the worker builds the event when the writable
            // window ends: the frames are named on a thread Mono did not start.
            int page = MemoryWatcher.PageSize;
            var data = new byte[64 * page];
            using (var got = new ManualResetEventSlim())
            using (var w = new MemoryWatcher(new WatcherOptions { LocateWriters = true }))
            {
                ChangeEvent delivered = null;
                w.OnChange += e => { delivered = e; got.Set(); };
                w.Watch(data, "big");
                int writeLine = ManagedWrite(data, 5 * page + 1, 9);
                Assert.True(got.Wait(TimeSpan.FromSeconds(20)), "delivered by the worker");
                Assert.Equal("MemWatch.Tests.WhereTests:ManagedWrite (byte[],int,byte)", delivered.Where.Function, "writer");
                Assert.Equal(writeLine, delivered.Where.Line, "line");
                Assert.Equal((int?)LibC.gettid(), delivered.Where.ThreadId, "this thread wrote");
                GC.KeepAlive(data);
            }
        }

        private sealed class Box { public int Value; }
        private static Box s_nullBox;

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static int ReadNull() { return s_nullBox.Value; }

        [Test]
        public void NullReferencesStillWorkWhileWritersAreLocated()
        {
            // Mono's own SIGSEGVs (NullReferenceException) pass through memwatch's
            // handler, which walks no stack for them; located writes still work after.
            int page = MemoryWatcher.PageSize;
            var data = new byte[64 * page];
            using (var w = new MemoryWatcher(new WatcherOptions { LocateWriters = true }))
            {
                w.Watch(data, "big");
                for (int round = 1; round <= 5; round++)
                {
                    int caught = 0;
                    for (int i = 0; i < 20000; i++)
                    {
                        try { ReadNull(); }
                        catch (NullReferenceException) { caught++; }
                    }
                    Assert.Equal(20000, caught, "round " + round + ": every null read became an NRE");
                    int writeLine = ManagedWrite(data, round * page, (byte)round);
                    ChangeEvent e = Single(w.CheckChanges(), "round " + round);
                    Assert.Ranges(new[] { new ByteRange(round * page, 1) }, e.ChangedRanges, "round " + round + ": range");
                    Assert.Equal("MemWatch.Tests.WhereTests:ManagedWrite (byte[],int,byte)", e.Where.Function, "round " + round + ": writer");
                    Assert.Equal(writeLine, e.Where.Line, "round " + round + ": line");
                }
                GC.KeepAlive(data);
            }
        }

        [Test]
        public void BadLocationOptions()
        {
            Assert.Throws<ArgumentOutOfRangeException>(
                () => new MemoryWatcher(new WatcherOptions { LocateWriters = true, StackDepth = 0 }), "StackDepth 0");
            Assert.Throws<ArgumentOutOfRangeException>(
                () => new MemoryWatcher(new WatcherOptions { LocateWriters = true, StackDepth = 33 }), "StackDepth 33");
            var e = Assert.Throws<MemWatchArgumentException>(
                () => new MemoryWatcher(new WatcherOptions { LocateWriters = true, Backend = Backend.Poll }), "poll");
            Assert.True(e.Message.Contains("protect"), "message names the backend it needs: " + e.Message);
        }
    }
}
