// CheckChanges(CancellationToken): a wait for a slow handler ends with
// OperationCanceledException when the token is cancelled, and the event is
// still delivered afterwards, exactly once.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace MemWatch.Tests
{
    public class CancellationTests
    {
        [Test]
        public void CancellingEndsTheWaitForASlowHandlerAndLosesNoEvent()
        {
            // Poll with a minute's interval: only CheckChanges detects the write.
            using (var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Poll, PollInterval = TimeSpan.FromMinutes(1) }))
            using (var release = new ManualResetEventSlim(false))
            {
                var data = new byte[8];
                w.Watch(data, "slow");
                var seen = new List<ChangeEvent>();
                w.OnChange += e => { release.Wait(); lock (seen) seen.Add(e); };
                data[2] = 7;
                using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
                {
                    var clock = Stopwatch.StartNew();
                    Assert.Throws<OperationCanceledException>(() => w.CheckChanges(cts.Token), "CheckChanges(token) while the handler blocks");
                    Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), "cancellation took " + clock.Elapsed);
                }
                lock (seen) Assert.Equal(0, seen.Count, "the handler is still blocked");
                release.Set();
                Assert.Equal(0, w.CheckChanges(CancellationToken.None).Count, "CheckChanges(None) with a handler");
                lock (seen)
                {
                    Assert.Equal(1, seen.Count, "the event given up on was delivered once");
                    Assert.Equal("slow", seen[0].VariableName, "name");
                    Assert.Bytes(new byte[] { 0, 0, 7, 0, 0, 0, 0, 0 }, seen[0].NewValue, "new value");
                    Assert.Bytes(new byte[8], seen[0].OldValue, "old value");
                }
                // An already cancelled token: nothing detected, nothing waited for.
                data[3] = 1;
                using (var done = new CancellationTokenSource())
                {
                    done.Cancel();
                    Assert.Throws<OperationCanceledException>(() => w.CheckChanges(done.Token), "a cancelled token");
                }
            }
        }

        [Test]
        public void WithoutHandlersTheTokenOverloadReturnsTheEvents()
        {
            using (var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Poll, PollInterval = TimeSpan.FromMinutes(1) }))
            {
                var data = new byte[8];
                w.Watch(data, "plain");
                data[1] = 3;
                var events = w.CheckChanges(new CancellationTokenSource().Token);
                Assert.Equal(1, events.Count, "events");
                Assert.Bytes(new byte[] { 0, 3, 0, 0, 0, 0, 0, 0 }, events[0].NewValue, "new value");
                Assert.Equal(1, events[0].Coalesced, "coalesced");
                w.Dispose();
                Assert.Throws<ObjectDisposedException>(() => w.CheckChanges(CancellationToken.None), "after Dispose");
            }
        }
    }
}
