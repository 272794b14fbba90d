// A watcher nobody drains stays bounded: past 1024 pending events, later
// changes of a region are merged into its pending event, whose Coalesced
// counts them; every change is in some event.

using System;
using System.Linq;
using System.Threading;

namespace MemWatch.Tests
{
    public class QueueTests
    {
        [Test]
        public void AnUndrainedQueueMergesChangesIntoACoalescedEvent()
        {
            using (var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Poll, PollInterval = TimeSpan.FromMilliseconds(1) }))
            {
                var data = new byte[8];
                w.Watch(data, "counter");
                long i = 0;
                var pause = new ManualResetEventSlim(false);
                while (w.GetStats().CoalescedEvents < 50)
                {
                    i++;
                    BitConverter.GetBytes(i).CopyTo(data, 0);
                    pause.Wait(TimeSpan.FromTicks(3000)); // 0.3 ms
                    Assert.True(i < 1000000, "never coalesced: " + w.GetStats());
                }
                Assert.Equal(1024L, w.GetStats().PendingEvents, "pending events at the cap");
                var events = w.CheckChanges();
                Assert.True(events.Count == 1024 || events.Count == 1025, events.Count + " events");
                Assert.Equal(0L, BitConverter.ToInt64(events[0].OldValue, 0), "first old value");
                for (int k = 1; k < events.Count; k++)
                    Assert.Equal(BitConverter.ToInt64(events[k - 1].NewValue, 0), BitConverter.ToInt64(events[k].OldValue, 0), "event " + k + ": old is the previous new");
                Assert.Equal(i, BitConverter.ToInt64(events[events.Count - 1].NewValue, 0), "last new value");
                var stats = w.GetStats();
                long merged = events.Sum(e => (long)e.Coalesced);
                Assert.Equal(stats.Events, merged, "every detected change is in some event");
                Assert.Equal(stats.CoalescedEvents, merged - events.Count, "stats count the merged changes");
                Assert.True(events.Any(e => e.Coalesced > 1), "an event carries merged changes");
                Assert.True(events.Take(1023).All(e => e.Coalesced == 1), "no merge before the queue was full");
            }
        }
    }
}
