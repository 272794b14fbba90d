// Mono turns null dereferences in managed code into NullReferenceException
// through its own SIGSEGV handler (checked with strace: one SIGSEGV per NRE,
// si_addr near 0). memwatch's protect backend installs a SIGSEGV handler too and
// must forward every fault that is not its own to Mono's handler.

using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace MemWatch.Tests
{
    public class SignalTests
    {
        private sealed class Node { public int Value; public Node Next; public int Get() { return Value; } }

        private static Node s_null;
        private static byte[] s_nullArray;

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static int Provoke(int i)
        {
            switch (i % 3)
            {
                case 0: return s_null.Value;            // field load through null
                case 1: return s_nullArray.Length;      // array length through null
                default: return s_null.Next.Get();      // callvirt on null
            }
        }

        private static int NullReferences(int count)
        {
            int caught = 0;
            for (int i = 0; i < count; i++)
            {
                try { Provoke(i); }
                catch (NullReferenceException) { caught++; }
            }
            return caught;
        }

        private static ChangeEvent events0(IReadOnlyList<ChangeEvent> events)
        {
            Assert.Equal(1, events.Count, "exactly one event");
            return events[0];
        }

        [Test]
        public void HundredThousandNullReferencesWithProtectActive()
        {
            string monoDebug = Environment.GetEnvironmentVariable("MONO_DEBUG") ?? "";
            Assert.False(monoDebug.Contains("explicit-null-checks"), "this test needs Mono's signal-based null checks");
            int page = MemoryWatcher.PageSize;
            using (var m = new Mapping(page))
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[4096];
                int arrayId = w.Watch(data, "pinned");
                int nativeId = w.Watch(m.Address, 64, "native");
                Assert.Equal("protect", w.GetStats().Backend, "protect backend active");
                long faultsBefore = w.GetStats().Faults;

                data[0] = 1;
                ChangeEvent first = events0(w.CheckChanges());
                Assert.Bytes(Bytes.Patched(4096, 0, 0, new byte[] { 1 }), first.NewValue, "write before the loop");

                Assert.Equal(100000, NullReferences(100000), "every null reference became a NullReferenceException");
                Assert.Equal(0, w.CheckChanges().Count, "the NRE loop changed no watched byte");
                data[1] = 2;
                m.Write(63, new byte[] { 0x3f });

                var events = w.CheckChanges();
                Assert.Equal(2, events.Count, "one event per region after the NRE loop");
                ChangeEvent ea = null, en = null;
                foreach (ChangeEvent e in events) { if (e.RegionId == arrayId) ea = e; if (e.RegionId == nativeId) en = e; }
                Assert.NotNull(ea, "array event");
                Assert.NotNull(en, "native event");
                Assert.Ranges(new[] { new ByteRange(1, 1) }, ea.ChangedRanges, "array ranges");
                Assert.Bytes(Bytes.Patched(4096, 0, 0, new byte[] { 1 }), ea.OldValue, "array old value");
                Assert.Bytes(Bytes.Patched(4096, 0, 0, new byte[] { 1, 2 }), ea.NewValue, "array new value");
                Assert.Bytes(Bytes.Patched(64, 0, 63, new byte[] { 0x3f }), en.NewValue, "native new value");
                Assert.True(w.GetStats().Faults > faultsBefore, "memwatch handled its own faults too");

                // Interleaved: writes to watched memory between bursts of NREs, checked each time.
                for (int round = 1; round <= 10; round++)
                {
                    data[10 + round] = (byte)(0x80 + round);
                    Assert.Equal(1000, NullReferences(1000), "round " + round + " NREs");
                    m.Write(10 + round, new byte[] { (byte)round });
                    var evs = w.CheckChanges();
                    Assert.Equal(2, evs.Count, "round " + round + ": events");
                    foreach (ChangeEvent e in evs)
                    {
                        Assert.Ranges(new[] { new ByteRange(10 + round, 1) }, e.ChangedRanges, "round " + round + " range of " + e.VariableName);
                        byte expected = e.RegionId == arrayId ? (byte)(0x80 + round) : (byte)round;
                        Assert.Equal((byte)0, e.OldValue[10 + round], "round " + round + " old byte");
                        Assert.Equal(expected, e.NewValue[10 + round], "round " + round + " new byte");
                    }
                }
                GC.KeepAlive(data);
            }
        }

        [Test]
        public void NullReferencesInsideHandlerOnDeliveryThread()
        {
            // The handler runs on memwatch's delivery thread (a native thread
            // attached to Mono): Mono's NRE machinery must work there too.
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var data = new byte[16];
                w.Watch(data, "h");
                int caught = -1;
                w.OnChange += e => { caught = NullReferences(10000); };
                data[3] = 3;
                Assert.Equal(0, w.CheckChanges().Count, "delivered to the handler");
                Assert.Equal(10000, caught, "NREs caught on the delivery thread");
                Assert.Equal(0L, w.GetStats().CallbackErrors, "no handler error");
            }
        }

        [Test]
        public void NullReferencesOnManyThreadsWhileWriting()
        {
            int page = MemoryWatcher.PageSize;
            using (var m = new Mapping(4L * page))
            using (var w = new MemoryWatcher(Backend.Protect))
            {
                var ids = new int[4];
                for (int i = 0; i < 4; i++) ids[i] = w.Watch(m.At((long)i * page), 16, "t" + i);
                var counts = new int[4];
                var threads = new List<Thread>();
                for (int i = 0; i < 4; i++)
                {
                    int k = i;
                    var t = new Thread(() =>
                    {
                        for (int r = 0; r < 10; r++)
                        {
                            m.Write((long)k * page + r, new byte[] { (byte)(r + 1) });
                            counts[k] += NullReferences(2000);
                        }
                    });
                    threads.Add(t);
                    t.Start();
                }
                foreach (Thread t in threads) t.Join();
                // Writes separated by more than the writable window are separate
                // events, so each region has 1..10 events depending on timing. They
                // must replay the write history exactly: each event's old value is
                // the previous new value, every new value is the state after some
                // round, in increasing rounds, and the last is the final state.
                var events = w.CheckChanges();
                for (int i = 0; i < 4; i++)
                {
                    Assert.Equal(20000, counts[i], "NREs of thread " + i);
                    var mine = new List<ChangeEvent>();
                    foreach (ChangeEvent x in events) if (x.RegionId == ids[i]) mine.Add(x);
                    mine.Sort((a, b) => a.Seq.CompareTo(b.Seq));
                    Assert.True(mine.Count >= 1 && mine.Count <= 10, "region " + i + ": 1..10 events, got " + mine.Count);
                    byte[] prev = new byte[16];
                    int lastRound = 0;
                    foreach (ChangeEvent e in mine)
                    {
                        Assert.Bytes(prev, e.OldValue, "region " + i + ": old value continues the history");
                        int round = 0;
                        while (round < 10 && e.NewValue[round] == round + 1) round++;
                        var state = new byte[16];
                        for (int r = 0; r < round; r++) state[r] = (byte)(r + 1);
                        Assert.Bytes(state, e.NewValue, "region " + i + ": new value is the state after a round");
                        Assert.True(round > lastRound, "region " + i + ": rounds increase");
                        int firstChanged = lastRound;
                        Assert.Ranges(new[] { new ByteRange(firstChanged, round - firstChanged) }, e.ChangedRanges, "region " + i + ": ranges");
                        lastRound = round;
                        prev = e.NewValue;
                    }
                    Assert.Equal(10, lastRound, "region " + i + ": final state");
                }
                Assert.Equal(0, w.CheckChanges().Count, "nothing left");
            }
        }
    }
}
