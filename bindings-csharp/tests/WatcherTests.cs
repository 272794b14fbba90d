using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;

namespace MemWatch.Tests
{
    /// <summary>The C# API: exact events, handlers, errors, lifetime.</summary>
    public class WatcherTests
    {
        private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

        private static ChangeEvent Single(IReadOnlyList<ChangeEvent> events, string what)
        {
            Assert.Equal(1, events.Count, what + ": number of events (" + string.Join("; ", events) + ")");
            return events[0];
        }

        // ---- exact events ------------------------------------------------

        /// <summary>A watcher on <paramref name="backend"/>, or a skip where the kernel/engine lacks it (writewatch).</summary>
        internal static MemoryWatcher Create(Backend backend)
        {
            try
            {
                return new MemoryWatcher(backend);
            }
            catch (MemWatchNotSupportedException ex)
            {
                if (backend != Backend.WriteWatch) throw;
                throw new SkipException("writewatch unavailable here: " + ex.Message);
            }
        }

        private static void ExactArrayEvent(Backend backend)
        {
            using (var w = Create(backend))
            {
                var data = new byte[100];
                int id = w.Watch(data, "buffer", "unit=bytes");
                Assert.True(id >= 1, "region ids start at 1");
                data[42] = 7;
                int tid = LibC.gettid();
                ChangeEvent e = Single(w.CheckChanges(), "after one write");
                Assert.Equal(id, e.RegionId, "region id");
                Assert.Equal("buffer", e.VariableName, "variable name");
                Assert.Equal("unit=bytes", e.Metadata, "metadata");
                Assert.Equal(100L, e.HowBig, "how_big");
                Assert.Equal(5, e.AdapterId, "adapter id of C#");
                Assert.Ranges(new[] { new ByteRange(42, 1) }, e.ChangedRanges, "changed ranges");
                Assert.Bytes(new byte[100], e.OldValue, "old value");
                Assert.Bytes(Bytes.Patched(100, 0, 42, new byte[] { 7 }), e.NewValue, "new value");
                Assert.Bytes(new byte[100], e.OldPreview, "old preview (region smaller than preview_bytes)");
                Assert.Bytes(Bytes.Patched(100, 0, 42, new byte[] { 7 }), e.NewPreview, "new preview");
                Assert.Null(e.StorageKeyOld, "storage key old");
                Assert.Null(e.StorageKeyNew, "storage key new");
                Assert.True(e.Seq > 0 && e.TimestampNs > 0, "seq and timestamp set");
                if (backend != Backend.Protect)
                {
                    Assert.Null(e.ThreadId, backend + " knows no writer thread");
                    Assert.Null(e.FaultIp, backend + " knows no fault ip");
                }
                else
                {
                    // A byte[] lives on a GC heap page that other objects share; when
                    // the engine sees that page written too often it leaves it writable
                    // ("hot") and reports no writer. The exact writer check is in
                    // WriterThreadIdIsReported, on pages nothing else touches.
                    Assert.True(e.ThreadId == null || e.ThreadId == tid, "writer thread id: expected " + tid + " or unknown, got " + e.ThreadId);
                }
                Assert.Equal(0, w.CheckChanges().Count, "second check without writes");

                data[42] = 8;
                data[99] = 1;
                e = Single(w.CheckChanges(), "second write");
                Assert.Ranges(new[] { new ByteRange(42, 1), new ByteRange(99, 1) }, e.ChangedRanges, "ranges of second change");
                Assert.Bytes(Bytes.Patched(100, 0, 42, new byte[] { 7 }), e.OldValue, "old value is the previous new value");
                Assert.Bytes(Bytes.Patched(100, 0, 42, new byte[] { 8 }, 99, new byte[] { 1 }), e.NewValue, "new value");

                WatcherStats s = w.GetStats();
                Assert.Equal(backend.ToString().ToLowerInvariant(), s.Backend, "stats backend");
                Assert.Equal(1L, s.Regions, "stats regions");
                Assert.Equal(2L, s.Events, "stats events");
                Assert.Equal(0L, s.PendingEvents, "stats pending events");
                Assert.True(s.SnapshotBytes >= 100, "snapshot bytes cover the region: " + s);
                if (backend == Backend.Protect) Assert.True(s.Faults >= 1, "protect stats count faults: " + s);
                GC.KeepAlive(data);
            }
        }

        [Test] public void ArrayProtectExactEvent() { ExactArrayEvent(Backend.Protect); }

        [Test] public void ArrayPollExactEvent() { ExactArrayEvent(Backend.Poll); }

        [Test] public void ArrayWriteWatchExactEvent() { ExactArrayEvent(Backend.WriteWatch); }

        [Test]
        public void AutoBackendIsReported()
        {
            using (var w = new MemoryWatcher())
            {
                var data = new byte[32];
                w.Watch(data, "auto");
                data[0] = 9;
                ChangeEvent e = Single(w.CheckChanges(), "auto backend");
                Assert.Bytes(Bytes.Patched(32, 0, 0, new byte[] { 9 }), e.NewValue, "new value");
                string b = w.GetStats().Backend;
                Assert.True(b == "protect" || b == "writewatch", "auto picks a real backend, got " + b);
            }
        }

        [Test]
        public void ArraySliceOnlyReportsItsBytes()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[64];
                int id = w.Watch(data, 10, 5, "slice");
                data[9] = 1;   // just before
                data[15] = 1;  // just after
                Assert.Equal(0, w.CheckChanges().Count, "writes beside the slice");
                data[12] = 0xab;
                ChangeEvent e = Single(w.CheckChanges(), "write inside the slice");
                Assert.Equal(id, e.RegionId, "region id");
                Assert.Equal(5L, e.HowBig, "how_big");
                Assert.Ranges(new[] { new ByteRange(2, 1) }, e.ChangedRanges, "ranges relative to the slice");
                Assert.Bytes(new byte[5], e.OldValue, "old");
                Assert.Bytes(new byte[] { 0, 0, 0xab, 0, 0 }, e.NewValue, "new");
            }
        }

        [Test]
        public void NativeMemoryLargeRegionHasPreviewsNotValues()
        {
            int page = MemoryWatcher.PageSize;
            using (var m = new Mapping(3L * page))
            using (var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Protect, MaxValueBytes = page, PreviewBytes = 4 }))
            {
                int id = w.Watch(m.Address, 3L * page, "pages");
                m.Write(1, new byte[] { 5 });
                m.Write(2L * page + 7, new byte[] { 6, 6 });
                ChangeEvent e = Single(w.CheckChanges(), "three pages");
                Assert.Equal(id, e.RegionId, "id");
                Assert.Equal(3L * page, e.HowBig, "how_big");
                Assert.Null(e.OldValue, "old value absent above MaxValueBytes");
                Assert.Null(e.NewValue, "new value absent above MaxValueBytes");
                Assert.Bytes(new byte[4], e.OldPreview, "old preview");
                Assert.Bytes(new byte[] { 0, 5, 0, 0 }, e.NewPreview, "new preview");
                Assert.Ranges(new[] { new ByteRange(1, 1), new ByteRange(2L * page + 7, 2) }, e.ChangedRanges, "ranges");
            }
        }

        [Test]
        public void SnapshotsOffGiveNewValueOnly()
        {
            using (var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Poll, Snapshots = false }))
            {
                var data = new byte[16];
                w.Watch(data, "nosnap");
                data[3] = 3;
                ChangeEvent e = Single(w.CheckChanges(), "without snapshots");
                Assert.Null(e.OldValue, "no old value without snapshots");
                Assert.Bytes(Bytes.Patched(16, 0, 3, new byte[] { 3 }), e.NewValue, "new value");
                Assert.Ranges(new[] { new ByteRange(0, 16) }, e.ChangedRanges, "one range covering the region");
                Assert.Equal(0, e.OldPreview.Length, "empty old preview");
            }
        }

        [Test]
        public void WriterThreadIdIsReported()
        {
            int page = MemoryWatcher.PageSize;
            const int threads = 4;
            using (var m = new Mapping((long)threads * page))
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var ids = new int[threads];
                for (int i = 0; i < threads; i++) ids[i] = w.Watch(m.At((long)i * page), 8, "t" + i);
                Assert.True(w.GetStats().ProtectedPages >= threads, "each watched page is protected: " + w.GetStats());
                var tids = new int[threads];
                var ts = new Thread[threads];
                for (int i = 0; i < threads; i++)
                {
                    int k = i;
                    ts[i] = new Thread(() => { tids[k] = LibC.gettid(); m.Write((long)k * page + 1, new byte[] { (byte)(k + 1) }); });
                    ts[i].Start();
                }
                foreach (Thread t in ts) t.Join();
                var events = w.CheckChanges();
                Assert.Equal(threads, events.Count, "one event per region");
                for (int i = 0; i < threads; i++)
                {
                    ChangeEvent e = events.Single(x => x.RegionId == ids[i]);
                    Assert.Equal((int?)tids[i], e.ThreadId, "writer of region " + i);
                    Assert.NotNull(e.FaultIp, "fault ip of region " + i);
                    Assert.Bytes(new byte[] { 0, (byte)(i + 1), 0, 0, 0, 0, 0, 0 }, e.NewValue, "value of region " + i);
                }
            }
        }

        [Test]
        public void ManySuccessiveChangesAreExact()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[64];
                w.Watch(data, "counter");
                for (int i = 0; i < 1000; i++)
                {
                    int at = i % 64;
                    byte old = data[at];
                    data[at] = (byte)(old + 1);
                    ChangeEvent e = Single(w.CheckChanges(), "iteration " + i);
                    Assert.Ranges(new[] { new ByteRange(at, 1) }, e.ChangedRanges, "iteration " + i);
                    Assert.Equal(old, e.OldValue[at], "old byte at iteration " + i);
                    Assert.Equal((byte)(old + 1), e.NewValue[at], "new byte at iteration " + i);
                }
                Assert.Equal(1000L, w.GetStats().Events, "event count");
            }
        }

        [Test]
        public void SameArrayOnTwoWatchers()
        {
            using (var a = new MemoryWatcher(Backend.Protect))
            using (var b = new MemoryWatcher(Backend.Poll))
            {
                var data = new byte[8];
                int ia = a.Watch(data, "a");
                int ib = b.Watch(data, "b");
                Assert.True(ia != ib, "ids are unique across watchers");
                data[7] = 0x77;
                ChangeEvent ea = Single(a.CheckChanges(), "watcher a");
                ChangeEvent eb = Single(b.CheckChanges(), "watcher b");
                Assert.Equal("a", ea.VariableName, "a's name");
                Assert.Equal("b", eb.VariableName, "b's name");
                Assert.Bytes(eb.NewValue, ea.NewValue, "same new value");
                Assert.True(a.Unwatch(ia), "unwatch on a");
                data[0] = 1;
                Assert.Equal(0, a.CheckChanges().Count, "a no longer watches");
                Assert.Equal(1, b.CheckChanges().Count, "b still watches");
            }
        }

        // ---- handlers ----------------------------------------------------

        [Test]
        public void SetCallbackDeliversOnTheDeliveryThread()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[16];
                int id = w.Watch(data, "cb");
                var got = new List<ChangeEvent>();
                int deliveryThread = -1;
                w.SetCallback(e => { lock (got) got.Add(e); deliveryThread = Thread.CurrentThread.ManagedThreadId; });
                data[1] = 0x11;
                Assert.Equal(0, w.CheckChanges().Count, "with a callback, CheckChanges returns nothing");
                // CheckChanges waited until delivery: no sleeping needed.
                lock (got)
                {
                    ChangeEvent e = Single(got, "delivered to the callback");
                    Assert.Equal(id, e.RegionId, "region");
                    Assert.Bytes(Bytes.Patched(16, 0, 1, new byte[] { 0x11 }), e.NewValue, "new value");
                }
                Assert.True(deliveryThread != Thread.CurrentThread.ManagedThreadId, "delivered on another thread");

                w.SetCallback(null);
                data[2] = 0x22;
                ChangeEvent polled = Single(w.CheckChanges(), "callback cleared: back to CheckChanges");
                Assert.Ranges(new[] { new ByteRange(2, 1) }, polled.ChangedRanges, "range");
                lock (got) Assert.Equal(1, got.Count, "callback not called after clearing");
            }
        }

        [Test]
        public void ChangedAndOnChangeBothReceiveEachEvent()
        {
            using (var w = new MemoryWatcher(Backend.Poll))
            {
                var data = new byte[16];
                w.Watch(data, "evt");
                var fromChanged = new List<ChangeEvent>();
                var fromOnChange = new List<ChangeEvent>();
                object sender = null;
                EventHandler<ChangeEvent> h1 = (s, e) => { sender = s; lock (fromChanged) fromChanged.Add(e); };
                Action<ChangeEvent> h2 = e => { lock (fromOnChange) fromOnChange.Add(e); };
                w.Changed += h1;
                w.OnChange += h2;
                data[5] = 5;
                Assert.Equal(0, w.CheckChanges().Count, "handlers attached");
                Assert.Equal(1, fromChanged.Count, "Changed got it");
                Assert.Equal(1, fromOnChange.Count, "OnChange got it");
                Assert.True(ReferenceEquals(fromChanged[0], fromOnChange[0]), "the same event object");
                Assert.True(ReferenceEquals(w, sender), "sender is the watcher");
                Assert.Bytes(Bytes.Patched(16, 0, 5, new byte[] { 5 }), fromChanged[0].NewValue, "value");

                w.Changed -= h1;
                data[6] = 6;
                Assert.Equal(0, w.CheckChanges().Count, "OnChange still attached");
                Assert.Equal(1, fromChanged.Count, "removed handler not called");
                Assert.Equal(2, fromOnChange.Count, "remaining handler called");

                w.OnChange -= h2;
                data[7] = 7;
                Assert.Equal(1, w.CheckChanges().Count, "no handlers: CheckChanges returns the event");
            }
        }

        [Test]
        public void MinimalUsageWorks()
        {
            // Minimal use: watch a byte[], subscribe to OnChange, call CheckChanges.
            var seen = new List<string>();
            var watcher = new MemoryWatcher();
            byte[] data = new byte[100];
            watcher.Watch(data, "buffer");
            watcher.OnChange += (e) => { lock (seen) seen.Add(e.VariableName + " changed"); };
            data[0] = 42;
            watcher.CheckChanges();
            lock (seen) Assert.Equal("buffer changed", seen.Single(), "snippet output");
            watcher.Dispose();
        }

        [Test]
        public void HandlerExceptionIsReportedAndDeliveryGoesOn()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[8];
                w.Watch(data, "thrower");
                var delivered = new List<ChangeEvent>();
                var errors = new List<CallbackErrorEventArgs>();
                w.Changed += (s, e) =>
                {
                    lock (delivered) delivered.Add(e);
                    if (delivered.Count == 1) throw new InvalidOperationException("boom in handler");
                };
                w.CallbackError += (s, a) => { lock (errors) errors.Add(a); };
                data[0] = 1;
                w.CheckChanges();
                Assert.Equal(1, errors.Count, "error reported");
                Assert.Equal("boom in handler", errors[0].Exception.Message, "the handler's exception");
                Assert.True(ReferenceEquals(delivered[0], errors[0].Event), "with the event");
                Assert.Equal(1L, w.GetStats().CallbackErrors, "stats.callback_errors");

                data[1] = 2;
                w.CheckChanges();
                Assert.Equal(2, delivered.Count, "the watcher keeps delivering");
                Assert.Bytes(new byte[] { 1, 2, 0, 0, 0, 0, 0, 0 }, delivered[1].NewValue, "second event exact");
                Assert.Equal(1, errors.Count, "no new error");
            }
        }

        [Test]
        public void HandlerExceptionWithoutSubscriberGoesToStderr()
        {
            TextWriter saved = Console.Error;
            var capture = new StringWriter();
            Console.SetError(capture);
            try
            {
                using (var w = new MemoryWatcher(Backend.Poll))
                {
                    var data = new byte[8];
                    w.Watch(data, "loud");
                    int calls = 0;
                    w.OnChange += e => { calls++; throw new ArgumentException("handler failure 42"); };
                    data[0] = 1;
                    w.CheckChanges();
                    data[0] = 2;
                    w.CheckChanges();
                    Assert.Equal(2, calls, "handler called for both events");
                    Assert.Equal(2L, w.GetStats().CallbackErrors, "both counted");
                }
            }
            finally
            {
                Console.SetError(saved);
            }
            string text = capture.ToString();
            Assert.True(text.Contains("memwatch: a change handler for 'loud' threw") && text.Contains("handler failure 42"),
                "stderr report, got: " + text);
        }

        [Test]
        public void UnsubscribingInsideTheHandlerDoesNotDeadlock()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[8];
                w.Watch(data, "once");
                int calls = 0;
                EventHandler<ChangeEvent> h = null;
                h = (s, e) => { calls++; w.Changed -= h; };
                w.Changed += h;
                data[0] = 1;
                Assert.Equal(0, w.CheckChanges().Count, "first event went to the handler");
                Assert.Equal(1, calls, "handler ran once");
                data[0] = 2;
                ChangeEvent e2 = Single(w.CheckChanges(), "after the handler removed itself");
                Assert.Bytes(new byte[] { 2, 0, 0, 0, 0, 0, 0, 0 }, e2.NewValue, "value");
                Assert.Equal(1, calls, "handler not called again");
            }
        }

        // ---- lifetime ------------------------------------------------------

        [Test]
        public void DisposeWhileHandlerRuns()
        {
            var w = new MemoryWatcher(Backend.Protect);
            var data = new byte[8];
            w.Watch(data, "slow");
            var entered = new ManualResetEventSlim();
            int finished = 0, calls = 0;
            w.Changed += (s, e) =>
            {
                Interlocked.Increment(ref calls);
                entered.Set();
                Thread.Sleep(300);
                Volatile.Write(ref finished, 1);
            };
            data[0] = 1;
            // The engine delivers on its own after the writable window.
            Assert.True(entered.Wait(Wait), "handler started");
            w.Dispose();
            Assert.Equal(1, Volatile.Read(ref finished), "Dispose returned only after the running handler did");
            Assert.True(w.IsDisposed, "disposed");
            data[1] = 1; // no longer watched: must not fault into a freed watcher
            Thread.Sleep(100);
            Assert.Equal(1, Volatile.Read(ref calls), "no delivery after Dispose");
            Assert.Throws<ObjectDisposedException>(() => w.CheckChanges(), "CheckChanges after Dispose");
        }

        [Test]
        public void DisposeInsideHandler()
        {
            var w = new MemoryWatcher(Backend.Protect);
            var a = new byte[8];
            var b = new byte[8];
            w.Watch(a, "a");
            w.Watch(b, "b");
            int calls = 0;
            var done = new ManualResetEventSlim();
            Exception inside = null;
            w.Changed += (s, e) =>
            {
                Interlocked.Increment(ref calls);
                try { w.Dispose(); } catch (Exception ex) { inside = ex; }
                done.Set();
            };
            a[0] = 1;
            b[0] = 1;
            // CheckChanges hands both events to the delivery thread; the first
            // handler call disposes, so the second event is never delivered.
            try { w.CheckChanges(); } catch (ObjectDisposedException) { }
            Assert.True(done.Wait(Wait), "handler ran");
            Assert.Null(inside, "Dispose inside the handler threw");
            Assert.True(w.IsDisposed, "disposed from inside");
            Thread.Sleep(100);
            Assert.Equal(1, Volatile.Read(ref calls), "no delivery after Dispose");
            a[1] = 2;
            Assert.Throws<ObjectDisposedException>(() => w.GetStats(), "GetStats after Dispose");
        }

        [Test]
        public void DisposedWatcherThrowsObjectDisposed()
        {
            var w = new MemoryWatcher(Backend.Poll);
            var data = new byte[4];
            int id = w.Watch(data, "x");
            w.Dispose();
            w.Dispose(); // idempotent
            Assert.True(w.IsDisposed, "IsDisposed");
            Assert.Throws<ObjectDisposedException>(() => w.Watch(data, "x"), "Watch");
            Assert.Throws<ObjectDisposedException>(() => w.Watch(new IntPtr(4096), 1, "x"), "Watch(IntPtr)");
            Assert.Throws<ObjectDisposedException>(() => w.Unwatch(id), "Unwatch");
            Assert.Throws<ObjectDisposedException>(() => w.CheckChanges(), "CheckChanges");
            Assert.Throws<ObjectDisposedException>(() => w.GetStats(), "GetStats");
            Assert.Throws<ObjectDisposedException>(() => w.SetCallback(e => { }), "SetCallback");
            Assert.Throws<ObjectDisposedException>(() => { w.Changed += (s, e) => { }; }, "Changed +=");
            var ode = Assert.Throws<ObjectDisposedException>(() => { w.OnChange += e => { }; }, "OnChange +=");
            Assert.True(ode.Message.Contains("disposed"), "clear message: " + ode.Message);
            w.Changed -= (s, e) => { }; // removing never throws
        }

        [Test]
        public void UnwatchSemantics()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[8];
                int id = w.Watch(data, "u");
                Assert.True(w.Unwatch(id), "first unwatch");
                Assert.False(w.Unwatch(id), "second unwatch");
                Assert.False(w.Unwatch(0), "id 0 is never handed out");
                Assert.False(w.Unwatch(-1), "id 0xffffffff unknown");
                data[0] = 1;
                Assert.Equal(0, w.CheckChanges().Count, "no event after unwatch");
                Assert.Equal(0L, w.GetStats().Regions, "no regions");
                int id2 = w.Watch(data, "again");
                Assert.True(id2 > id, "ids are never reused");
                data[0] = 2;
                Assert.Equal(1, w.CheckChanges().Count, "watching again works");
            }
        }

        private static WeakReference WatchGarbage(MemoryWatcher w, out int id)
        {
            // On a thread that then ends, so no stale stack slot (Mono scans
            // stacks conservatively) keeps the array alive.
            WeakReference wr = null;
            int rid = 0;
            var t = new Thread(() =>
            {
                var data = new byte[64 * 1024];
                rid = w.Watch(data, "garbage");
                wr = new WeakReference(data);
            });
            t.Start();
            t.Join();
            id = rid;
            return wr;
        }

        private static void FullGc()
        {
            for (int i = 0; i < 3; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }

        [Test]
        public void WatchedArraysStayPinnedUntilUnwatch()
        {
            using (var w = new MemoryWatcher(Backend.Poll))
            {
                int id;
                WeakReference wr = WatchGarbage(w, out id);
                FullGc();
                Assert.True(wr.IsAlive, "a watched array is kept alive by its pin");
                Assert.True(w.Unwatch(id), "unwatch");
                FullGc();
                Assert.False(wr.IsAlive, "after Unwatch the array is released");
            }
        }

        [Test]
        public void DisposeReleasesWatchedArrays()
        {
            var w = new MemoryWatcher(Backend.Protect);
            int id;
            WeakReference wr = WatchGarbage(w, out id);
            FullGc();
            Assert.True(wr.IsAlive, "pinned while watched");
            w.Dispose();
            FullGc();
            Assert.False(wr.IsAlive, "after Dispose the array is released");
        }

        private static IntPtr AddressOf(byte[] a)
        {
            GCHandle h = GCHandle.Alloc(a, GCHandleType.Pinned);
            try { return h.AddrOfPinnedObject(); } finally { h.Free(); }
        }

        private static object s_sink;

        private static void GcWhileWatched(Backend backend)
        {
            using (var w = Create(backend))
            {
                int[] sizes = { 1, 7, 16, 100, 512, 1000, 4096, 5000, 9000, 100000 };
                var arrays = new List<byte[]>();
                var ids = new List<int>();
                var junk = new List<object>();
                foreach (int size in sizes)
                {
                    // Interleave garbage so the watched arrays share nursery pages with it.
                    for (int j = 0; j < 50; j++) junk.Add(new byte[j * 8]);
                    var a = new byte[size];
                    for (int k = 0; k < size; k++) a[k] = (byte)k;
                    arrays.Add(a);
                    ids.Add(w.Watch(a, "arr" + size));
                }
                var before = arrays.Select(AddressOf).ToList();
                junk = null;
                for (int round = 0; round < 5; round++)
                {
                    for (int j = 0; j < 20000; j++) s_sink = new byte[(j % 64) + 1];
                    s_sink = new byte[200000];
                    FullGc();
                }
                s_sink = null;
                var after = arrays.Select(AddressOf).ToList();
                for (int i = 0; i < sizes.Length; i++)
                    Assert.Equal(before[i], after[i], "array of " + sizes[i] + " bytes did not move");
                Assert.Equal(0, w.CheckChanges().Count, "collections changed no watched byte");

                for (int i = 0; i < sizes.Length; i++) arrays[i][sizes[i] - 1] ^= 0xff;
                var events = w.CheckChanges();
                Assert.Equal(sizes.Length, events.Count, "one event per array");
                for (int i = 0; i < sizes.Length; i++)
                {
                    int size = sizes[i];
                    ChangeEvent e = events.Single(x => x.RegionId == ids[i]);
                    Assert.Ranges(new[] { new ByteRange(size - 1, 1) }, e.ChangedRanges, "range of arr" + size);
                    if (size <= 4096)
                    {
                        Assert.Equal((byte)(size - 1), e.OldValue[size - 1], "old last byte of arr" + size);
                        Assert.Bytes(arrays[i], e.NewValue, "new value of arr" + size);
                    }
                    else
                    {
                        Assert.Null(e.NewValue, "no whole value above 4096 bytes");
                    }
                }
            }
        }

        [Test] public void GcCollectWhileArraysWatchedProtect() { GcWhileWatched(Backend.Protect); }

        [Test] public void GcCollectWhileArraysWatchedPoll() { GcWhileWatched(Backend.Poll); }

        [Test] public void GcCollectWhileArraysWatchedWriteWatch() { GcWhileWatched(Backend.WriteWatch); }

        [Test]
        public void FileStreamReadIntoWatchedArrayIsReported()
        {
            string path = Path.GetTempFileName();
            try
            {
                File.WriteAllBytes(path, new byte[] { 1, 2, 3, 4 });
                using (var w = new MemoryWatcher(Backend.Protect))
                {
                    var buf = new byte[64];
                    w.Watch(buf, "io");
                    int n;
                    using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1))
                        n = fs.Read(buf, 0, 4);
                    Assert.Equal(4, n, "bytes read");
                    ChangeEvent e = Single(w.CheckChanges(), "read into the watched array");
                    Assert.Ranges(new[] { new ByteRange(0, 4) }, e.ChangedRanges, "ranges");
                    Assert.Bytes(Bytes.Patched(64, 0, 0, new byte[] { 1, 2, 3, 4 }), e.NewValue, "new value");
                }
            }
            finally
            {
                File.Delete(path);
            }
        }

        private static void SyscallInto(Backend backend)
        {
            var fds = new int[2];
            Assert.Equal(0, LibC.pipe(fds), "pipe");
            try
            {
                using (var m = new Mapping(MemoryWatcher.PageSize))
                using (var w = Create(backend))
                {
                    w.Watch(m.Address, 16, "sys");
                    Assert.Equal(3L, LibC.write(fds[1], new byte[] { 7, 8, 9 }, new UIntPtr(3)).ToInt64(), "pipe write");
                    long r = LibC.read(fds[0], m.Address, new UIntPtr(3)).ToInt64();
                    int errno = Marshal.GetLastWin32Error();
                    if (backend == Backend.Protect)
                    {
                        Assert.Equal(-1L, r, "read() into a protected page fails");
                        Assert.Equal(LibC.EFAULT, errno, "with EFAULT");
                        Assert.Equal(0, w.CheckChanges().Count, "nothing was written");
                    }
                    else
                    {
                        Assert.Equal(3L, r, "read() into a " + backend + " region works");
                        ChangeEvent e = Single(w.CheckChanges(), backend + " sees the kernel's write");
                        Assert.Ranges(new[] { new ByteRange(0, 3) }, e.ChangedRanges, "ranges");
                        Assert.Bytes(Bytes.Patched(16, 0, 0, new byte[] { 7, 8, 9 }), e.NewValue, "new value");
                    }
                }
            }
            finally
            {
                LibC.close(fds[0]);
                LibC.close(fds[1]);
            }
        }

        /// <summary>
        /// The documented limit of the protect backend: the kernel does not fault on
        /// a read-only user page, the system call fails with EFAULT.
        /// </summary>
        [Test] public void SyscallIntoProtectedPageFailsWithEfault() { SyscallInto(Backend.Protect); }

        [Test] public void SyscallIntoPolledRegionIsReported() { SyscallInto(Backend.Poll); }

        [Test] public void SyscallIntoWriteWatchRegionIsReported() { SyscallInto(Backend.WriteWatch); }

        private static void AbandonWatcher(bool withHandler, out WeakReference watcher, out WeakReference array)
        {
            // On a thread of its own that then ends: Mono scans stacks
            // conservatively, and a stale slot on this thread's stack could keep
            // the objects alive and make the test depend on stack layout.
            WeakReference ww = null, wa = null;
            var t = new Thread(() =>
            {
                var w = new MemoryWatcher(Backend.Protect);
                var data = new byte[64 * 1024];
                w.Watch(data, "abandoned");
                if (withHandler) w.Changed += (s, e) => { };
                ww = new WeakReference(w);
                wa = new WeakReference(data);
            });
            t.Start();
            t.Join();
            watcher = ww;
            array = wa;
        }

        [Test]
        public void UndisposedWatcherWithoutHandlersIsReleasedByTheGc()
        {
            WeakReference w, a;
            AbandonWatcher(false, out w, out a);
            FullGc();
            FullGc();
            Assert.False(w.IsAlive, "an unreachable watcher without handlers is collected");
            Assert.False(a.IsAlive, "and its array unpinned");
        }

        [Test]
        public void UndisposedWatcherWithHandlerStaysAlive()
        {
            WeakReference w, a;
            AbandonWatcher(true, out w, out a);
            FullGc();
            var watcher = (MemoryWatcher)w.Target;
            Assert.NotNull(watcher, "a watcher with a handler stays alive while it can deliver");
            Assert.True(a.IsAlive, "its array stays pinned");
            watcher.Dispose();
            watcher = null;
            FullGc();
            Assert.False(a.IsAlive, "after Dispose the array is released");
        }

        [Test]
        public void ManyWatchersWithHandlersComeAndGo()
        {
            // Each watcher with a handler starts a native delivery thread that Mono
            // attaches on its first callback; Dispose joins it.
            for (int i = 0; i < 200; i++)
            {
                using (var w = new MemoryWatcher(i % 2 == 0 ? Backend.Protect : Backend.Poll))
                {
                    var data = new byte[16];
                    w.Watch(data, "w" + i);
                    ChangeEvent got = null;
                    w.OnChange += e => got = e;
                    data[i % 16] = (byte)(i + 1);
                    Assert.Equal(0, w.CheckChanges().Count, "delivered to the handler, watcher " + i);
                    Assert.NotNull(got, "handler ran, watcher " + i);
                    Assert.Equal((byte)(i + 1), got.NewValue[i % 16], "value, watcher " + i);
                }
            }
        }

        [Test]
        public void ConcurrentCallsThenDisposeUnderLoad()
        {
            // Several threads watch, write, unwatch and check on one watcher while
            // another disposes it: every call either works or throws
            // ObjectDisposedException; nothing else, no crash (the native handle
            // is freed only after the last call in flight returned).
            for (int round = 0; round < 5; round++)
            {
                var w = new MemoryWatcher(round % 2 == 0 ? Backend.Protect : Backend.Poll);
                var unexpected = new List<Exception>();
                int ops = 0;
                var threads = new List<Thread>();
                for (int t = 0; t < 4; t++)
                {
                    int k = t;
                    threads.Add(new Thread(() =>
                    {
                        var arr = new byte[32 + k];
                        try
                        {
                            for (int i = 0; i < 100000; i++)
                            {
                                int id = w.Watch(arr, "t" + k);
                                arr[i % arr.Length]++;
                                if (k == 0) w.CheckChanges();
                                if (k == 1) w.GetStats();
                                Assert.True(w.Unwatch(id), "own region unwatches");
                                Interlocked.Increment(ref ops);
                            }
                        }
                        catch (ObjectDisposedException)
                        {
                        }
                        catch (Exception ex)
                        {
                            lock (unexpected) unexpected.Add(ex);
                        }
                    }));
                }
                foreach (Thread t in threads) t.Start();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                while (Volatile.Read(ref ops) < 200 && sw.Elapsed < Wait) Thread.Sleep(1);
                w.Dispose();
                foreach (Thread t in threads) Assert.True(t.Join(Wait), "worker thread ends after Dispose");
                lock (unexpected) Assert.Equal(0, unexpected.Count, "unexpected exceptions: " + string.Join(" | ", unexpected));
                Assert.True(Volatile.Read(ref ops) >= 200, "the threads made progress before Dispose");
            }
        }

        [Test]
        public void NativeVersionIsReported()
        {
            string v = MemoryWatcher.NativeVersion;
            Assert.True(!string.IsNullOrEmpty(v) && char.IsDigit(v[0]) && v.Contains("."), "version string: " + v);
            Assert.True(MemoryWatcher.PageSize >= 4096 && (MemoryWatcher.PageSize & (MemoryWatcher.PageSize - 1)) == 0, "page size");
        }
    }
}
