// The value store: values of regions larger than MaxValueBytes go to a MemStream
// store, events carry their keys, and another process (this test program run
// again as a child) reads the values back with MemStore.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Threading;

namespace MemWatch.Tests
{
    public class ValueStoreTests
    {
        public const string ReaderFlag = "--child-store-reader";

        /// <summary>The child: prints each key's value in hex, or "absent".</summary>
        public static int Reader(string storeName, string[] keys)
        {
            using (MemStore s = MemStore.Open(storeName))
            {
                foreach (string k in keys)
                {
                    byte[] v = s.Get(k);
                    Console.WriteLine(v == null ? "absent" : BitConverter.ToString(v).Replace("-", "").ToLowerInvariant());
                }
            }
            return 0;
        }

        /// <summary>Runs the reader in another process; null for an absent key.</summary>
        private static byte[][] ReadInAnotherProcess(string storeName, params string[] keys)
        {
            ChildResult r = ChildProcess.Run(ReaderFlag + " " + storeName + " " + string.Join(" ", keys), 60000);
            Assert.True(r.Exited, "the reader process exits");
            Assert.Equal(0, r.ExitCode, "reader exit code; stderr: " + r.Error);
            string[] lines = r.Output.Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(keys.Length, lines.Length, "reader lines: " + r.Output);
            return lines.Select(l => l == "absent" ? null : Bytes.Hex(l.Trim())).ToArray();
        }

        private static string StoreName(string what)
        {
            return "mw-cs-" + what + "-" + Process.GetCurrentProcess().Id;
        }

        private static ChangeEvent Single(IReadOnlyList<ChangeEvent> events, int regionId, ByteRange range, string what)
        {
            Assert.Equal(1, events.Count, what + ": number of events (" + string.Join("; ", events) + ")");
            ChangeEvent e = events[0];
            Assert.Equal(regionId, e.RegionId, what + ": region");
            Assert.Ranges(new[] { range }, e.ChangedRanges, what + ": ranges");
            return e;
        }

        private static void LargeValuesGoToTheStore(Backend backend)
        {
            string name = StoreName("values-" + backend.ToString().ToLowerInvariant());
            const int size = 3 * 4096 + 100;
            var data = new byte[size];
            for (int i = 0; i < size; i++) data[i] = (byte)(i * 7 % 251);
            try
            {
                using (MemoryWatcher w = WatcherTests.Create(backend))
                {
                    w.SetValueStore(name, 8 << 20);
                    int id = w.Watch(data, "big");
                    byte[] v0 = (byte[])data.Clone();
                    data[5000] ^= 0xff; // 2 bytes
                    data[5001] ^= 0xff;
                    byte[] v1 = (byte[])data.Clone();

                    ChangeEvent e = Single(w.CheckChanges(), id, new ByteRange(5000, 2), "first change");
                    Assert.Null(e.OldValue, "old value of a large region");
                    Assert.Null(e.NewValue, "new value of a large region");
                    Assert.Equal((long)size, e.HowBig, "how_big");
                    Assert.Equal("memwatch/5/" + id + "/0", e.StorageKeyOld, "storage key old");
                    Assert.Equal("memwatch/5/" + id + "/1", e.StorageKeyNew, "storage key new");
                    byte[][] got = ReadInAnotherProcess(name, e.StorageKeyOld, e.StorageKeyNew, "memwatch/5/0/0");
                    Assert.Bytes(v0, got[0], "old value read by another process");
                    Assert.Bytes(v1, got[1], "new value read by another process");
                    Assert.Null(got[2], "a key never stored, read by another process");

                    // The next change: its old value is the previous new one.
                    data[size - 1] ^= 0xff;
                    byte[] v2 = (byte[])data.Clone();
                    ChangeEvent e2 = Single(w.CheckChanges(), id, new ByteRange(size - 1, 1), "second change");
                    Assert.Equal(e.StorageKeyNew, e2.StorageKeyOld, "second event's old key");
                    Assert.Equal("memwatch/5/" + id + "/2", e2.StorageKeyNew, "second event's new key");
                    using (MemStore s = MemStore.Open(name))
                    {
                        Assert.Equal(name, s.Name, "store name");
                        Assert.Bytes(v1, s.Get(e2.StorageKeyOld), "second old value, same process");
                        Assert.Bytes(v2, s.Get(e2.StorageKeyNew), "second new value, same process");
                        Assert.Null(s.Get("memwatch/5/0/0"), "absent key");

                        // Small regions keep their values in the event.
                        var small = new byte[16];
                        int sid = w.Watch(small, "small");
                        small[3] = 7;
                        ChangeEvent es = Single(w.CheckChanges(), sid, new ByteRange(3, 1), "small region");
                        Assert.Null(es.StorageKeyOld, "small region: no old key");
                        Assert.Null(es.StorageKeyNew, "small region: no new key");
                        Assert.Bytes(new byte[16], es.OldValue, "small region: old value in the event");
                        Assert.Bytes(Bytes.Patched(16, 0, 3, new byte[] { 7 }), es.NewValue, "small region: new value in the event");
                        GC.KeepAlive(small);

                        // Cleared: no more keys, and still no values.
                        w.ClearValueStore();
                        data[0] ^= 0xff;
                        ChangeEvent e3 = Single(w.CheckChanges(), id, new ByteRange(0, 1), "after ClearValueStore");
                        Assert.Null(e3.StorageKeyOld, "no old key after ClearValueStore");
                        Assert.Null(e3.StorageKeyNew, "no new key after ClearValueStore");
                        Assert.Null(e3.OldValue, "still no old value");
                        Assert.Null(e3.NewValue, "still no new value");
                        Assert.Null(s.Get("memwatch/5/" + id + "/3"), "nothing stored after ClearValueStore");
                    }
                }
            }
            finally
            {
                Assert.True(MemStore.Unlink(name), "the store existed and is unlinked");
            }
            GC.KeepAlive(data);
        }

        [Test] public void LargeValuesGoToTheStoreProtect() { LargeValuesGoToTheStore(Backend.Protect); }

        [Test] public void LargeValuesGoToTheStorePoll() { LargeValuesGoToTheStore(Backend.Poll); }

        [Test] public void LargeValuesGoToTheStoreWriteWatch() { LargeValuesGoToTheStore(Backend.WriteWatch); }

        /// <summary>The README's example, as written there, plus checks of what its comments say.</summary>
        [Test]
        public void ReadmeExample()
        {
            string store = "myapp-values-" + Process.GetCurrentProcess().Id; // one store per watching process
            var frame = new byte[64 * 1024];                // larger than MaxValueBytes
            using (var w = new MemoryWatcher())
            {
                w.SetValueStore(store, 64 << 20);           // created if missing: 64 MiB, LRU eviction
                w.Watch(frame, "frame");
                frame[1000] = 0xab;
                frame[1001] = 0xcd;
                ChangeEvent e = w.CheckChanges()[0];        // e.OldValue == null, e.NewValue == null
                using (MemStore s = MemStore.Open(store))   // in this or any other process
                {
                    byte[] before = s.Get(e.StorageKeyOld); // 65536 bytes, before[1000] == 0x00
                    byte[] after = s.Get(e.StorageKeyNew);  // 65536 bytes, after[1000] == 0xab

                    Assert.True(e.OldValue == null && e.NewValue == null, "no values in the event");
                    Assert.Bytes(new byte[64 * 1024], before, "before");
                    Assert.Bytes(Bytes.Patched(64 * 1024, 0, 1000, new byte[] { 0xab, 0xcd }), after, "after");
                }
            }
            Assert.True(MemStore.Unlink(store), "unlinked");
        }

        [Test]
        public void SetValueStoreAfterWatchStoresTheCurrentValue()
        {
            string name = StoreName("late");
            var data = Bytes.Filled(10000, (byte)'x');
            try
            {
                using (var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Poll, MaxValueBytes = 100 }))
                {
                    int id = w.Watch(data, "late");
                    w.SetValueStore(name, 1 << 20);
                    using (MemStore s = MemStore.Open(name))
                    {
                        Assert.Bytes(Bytes.Filled(10000, (byte)'x'), s.Get("memwatch/5/" + id + "/0"), "value stored by SetValueStore");
                        data[0] = (byte)'y';
                        ChangeEvent e = Single(w.CheckChanges(), id, new ByteRange(0, 1), "first change");
                        Assert.Bytes(Bytes.Filled(10000, (byte)'x'), s.Get(e.StorageKeyOld), "old value");
                        Assert.Bytes(Bytes.Patched(10000, (byte)'x', 0, new[] { (byte)'y' }), s.Get(e.StorageKeyNew), "new value");
                    }
                }
            }
            finally
            {
                Assert.True(MemStore.Unlink(name), "the store existed and is unlinked");
            }
        }

        [Test]
        public void ValueStoreErrors()
        {
            string missing = StoreName("missing");
            MemStoreException ex = Assert.Throws<MemStoreException>(() => MemStore.Open(missing), "Open of a missing store");
            Assert.Equal(MemStoreError.NotFound, ex.Error, "error code of a missing store");
            Assert.False(MemStore.Unlink(missing), "Unlink of a missing store");
            ex = Assert.Throws<MemStoreException>(() => MemStore.Open("bad/name"), "Open of an invalid name");
            Assert.Equal(MemStoreError.Invalid, ex.Error, "error code of an invalid name");
            Assert.Throws<ArgumentNullException>(() => MemStore.Open(null), "Open(null)");

            string name = StoreName("errors");
            var w = new MemoryWatcher(Backend.Poll);
            try
            {
                Assert.Throws<ArgumentNullException>(() => w.SetValueStore(null, 1 << 20), "null store name");
                Assert.Throws<ArgumentException>(() => w.SetValueStore("", 1 << 20), "empty store name");
                Assert.Throws<ArgumentException>(() => w.SetValueStore("nul\0name", 1 << 20), "NUL in the store name");
                Assert.Throws<ArgumentOutOfRangeException>(() => w.SetValueStore(name, -1), "negative capacity");
                MemWatchArgumentException mex = Assert.Throws<MemWatchArgumentException>(() => w.SetValueStore("bad/name", 1 << 20), "invalid store name");
                Assert.Equal(MemWatchError.InvalidArgument, mex.Error, "invalid store name: code");
                mex = Assert.Throws<MemWatchArgumentException>(() => w.SetValueStore(missing, 0), "capacity 0 and no such store");
                Assert.Equal(MemWatchError.InvalidArgument, mex.Error, "no such store: code");
                w.ClearValueStore(); // nothing set: fine

                w.SetValueStore(name, 1 << 20);
                MemStore s = MemStore.Open(name);
                Assert.Throws<ArgumentNullException>(() => s.Get((string)null), "Get(null)");
                ex = Assert.Throws<MemStoreException>(() => s.Get(""), "Get of an empty key");
                Assert.Equal(MemStoreError.Invalid, ex.Error, "empty key: code");
                Assert.False(s.IsClosed, "open");
                s.Dispose();
                s.Close(); // idempotent
                Assert.True(s.IsClosed, "closed");
                Assert.Throws<ObjectDisposedException>(() => s.Get("k"), "Get after Dispose");

                w.Dispose();
                Assert.Throws<ObjectDisposedException>(() => w.SetValueStore(name, 1 << 20), "SetValueStore after Dispose");
                Assert.Throws<ObjectDisposedException>(() => w.ClearValueStore(), "ClearValueStore after Dispose");
            }
            finally
            {
                w.Dispose();
                Assert.True(MemStore.Unlink(name), "the store existed and is unlinked");
            }
        }
    }
}
