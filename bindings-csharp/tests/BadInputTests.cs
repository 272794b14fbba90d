using System;
using System.Collections.Generic;

namespace MemWatch.Tests
{
    /// <summary>Bad input gets a clear .NET exception, never a crash, hang or ignored watch.</summary>
    public class BadInputTests
    {
        [Test]
        public void ArrayArguments()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[16];
                var e1 = Assert.Throws<ArgumentNullException>(() => w.Watch((byte[])null, "x"), "null array");
                Assert.Equal("data", e1.ParamName, "param name");
                var e2 = Assert.Throws<ArgumentException>(() => w.Watch(new byte[0], "x"), "empty array");
                Assert.True(e2.Message.Contains("empty"), "message says empty: " + e2.Message);
                Assert.Throws<ArgumentOutOfRangeException>(() => w.Watch(data, -1, 4, "x"), "negative offset");
                Assert.Throws<ArgumentOutOfRangeException>(() => w.Watch(data, 17, 1, "x"), "offset past the end");
                var e3 = Assert.Throws<ArgumentOutOfRangeException>(() => w.Watch(data, 0, 0, "x"), "zero count");
                Assert.Equal("count", e3.ParamName, "param name");
                Assert.Throws<ArgumentOutOfRangeException>(() => w.Watch(data, 10, 7, "x"), "count past the end");
                var e4 = Assert.Throws<ArgumentNullException>(() => w.Watch(data, null), "null name");
                Assert.Equal("name", e4.ParamName, "param name");
                Assert.Throws<ArgumentException>(() => w.Watch(data, "a\0b"), "NUL in name");
                Assert.Throws<ArgumentException>(() => w.Watch(data, "ok", "m\0"), "NUL in metadata");
                Assert.Equal(0L, w.GetStats().Regions, "nothing was watched by the failed calls");
                // Still fully usable.
                w.Watch(data, "fine");
                data[0] = 1;
                Assert.Equal(1, w.CheckChanges().Count, "watcher works after bad calls");
            }
        }

        [Test]
        public void PointerArguments()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var e1 = Assert.Throws<ArgumentException>(() => w.Watch(IntPtr.Zero, 8, "x"), "null address");
                Assert.Equal("address", e1.ParamName, "param name");
                using (var m = new Mapping(MemoryWatcher.PageSize))
                {
                    Assert.Throws<ArgumentOutOfRangeException>(() => w.Watch(m.Address, 0, "x"), "zero size");
                    Assert.Throws<ArgumentOutOfRangeException>(() => w.Watch(m.Address, -5, "x"), "negative size");
                }
            }
        }

        [Test]
        public void OverlapIsRejected()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[32];
                int id = w.Watch(data, 0, 16, "first");
                var ex = Assert.Throws<MemWatchArgumentException>(() => w.Watch(data, 8, 16, "second"), "overlapping watch");
                Assert.Equal(MemWatchError.Overlap, ex.Error, "error code");
                Assert.True(ex.Message.Contains("overlap"), "message names the overlap: " + ex.Message);
                Assert.Throws<MemWatchArgumentException>(() => w.Watch(data, "whole"), "whole array overlaps too");
                int id2 = w.Watch(data, 16, 16, "adjacent"); // touching is fine
                Assert.Equal(2L, w.GetStats().Regions, "two regions");
                data[15] = 1;
                data[16] = 2;
                var events = w.CheckChanges();
                Assert.Equal(2, events.Count, "both regions report");
                Assert.True(w.Unwatch(id) && w.Unwatch(id2), "both unwatch");
            }
        }

        [Test]
        public void UnmappedMemoryIsRejected()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var m = new Mapping(MemoryWatcher.PageSize);
                IntPtr addr = m.Address;
                m.Dispose();
                var ex = Assert.Throws<MemWatchArgumentException>(() => w.Watch(addr, 16, "gone"), "unmapped");
                Assert.Equal(MemWatchError.Unmapped, ex.Error, "error code");
                Assert.Equal("address", ex.ParamName, "param name");
            }
        }

        [Test]
        public void ReadOnlyMemoryIsRejected()
        {
            using (var w = new MemoryWatcher(Backend.Protect))
            using (var m = new Mapping(MemoryWatcher.PageSize, LibC.PROT_READ))
            {
                var ex = Assert.Throws<MemWatchArgumentException>(() => w.Watch(m.Address, 16, "ro"), "read-only");
                Assert.Equal(MemWatchError.ReadOnly, ex.Error, "error code");
                Assert.True(ex.Message.ToLowerInvariant().Contains("read-only"), "message: " + ex.Message);
            }
        }

        [Test]
        public void BadOptions()
        {
            Assert.Throws<ArgumentNullException>(() => new MemoryWatcher((WatcherOptions)null), "null options");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { MaxValueBytes = -1 }), "negative MaxValueBytes");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { PreviewBytes = -1 }), "negative PreviewBytes");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { RingCapacity = 0 }), "zero RingCapacity");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { PollInterval = TimeSpan.Zero }), "zero PollInterval");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { WritableWindow = TimeSpan.FromMilliseconds(-1) }), "negative WritableWindow");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { WritableWindow = TimeSpan.Zero }), "zero WritableWindow");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { PollInterval = TimeSpan.FromMilliseconds(-5) }), "negative PollInterval");
            Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher(new WatcherOptions { WritableWindow = TimeSpan.MaxValue }), "WritableWindow too long");
            var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryWatcher((Backend)42), "unknown backend");
            Assert.True(ex.Message.Contains("backend"), "message: " + ex.Message);
        }

        [Test]
        public void WriteWatchEitherWorksOrSaysWhy()
        {
            MemoryWatcher w = null;
            try
            {
                w = new MemoryWatcher(Backend.WriteWatch);
            }
            catch (MemWatchNotSupportedException ex)
            {
                Assert.Equal(MemWatchError.Unsupported, ex.Error, "error code");
                Assert.True(ex.Message.Length > 20, "says why: " + ex.Message);
                return;
            }
            using (w)
            {
                var data = new byte[8];
                try
                {
                    w.Watch(data, "ww");
                }
                catch (MemWatchNotSupportedException ex)
                {
                    Assert.True(ex.Message.Length > 20, "says why: " + ex.Message);
                    return;
                }
                data[4] = 4;
                var events = w.CheckChanges();
                Assert.Equal(1, events.Count, "writewatch event");
                Assert.Bytes(new byte[] { 0, 0, 0, 0, 4, 0, 0, 0 }, events[0].NewValue, "writewatch value");
            }
        }
    }
}
