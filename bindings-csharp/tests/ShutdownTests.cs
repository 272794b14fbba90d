// Process exit with watchers still delivering: Mono aborts attached threads and
// finalizes every object at shutdown. The binding disposes live watchers on
// ProcessExit and never lets a ThreadAbortException unwind into native frames.
// Each test runs this test program again as a child process.

using System;
using System.Diagnostics;
using System.Reflection;
using System.Threading;

namespace MemWatch.Tests
{
    public class ShutdownTests
    {
        public const string ChildFlag = "--child-exit-with-live-watcher";

        /// <summary>The child: a watcher busy delivering to a slow handler when Main returns.</summary>
        public static int Child(string backend)
        {
            var w = new MemoryWatcher(new WatcherOptions
            {
                Backend = backend == "poll" ? Backend.Poll : Backend.Protect,
                PollInterval = TimeSpan.FromMilliseconds(1),
                WritableWindow = TimeSpan.FromMilliseconds(1),
            });
            var data = new byte[64];
            w.Watch(data, "busy");
            int n = 0;
            w.OnChange += e => { Interlocked.Increment(ref n); Thread.Sleep(1); };
            var writer = new Thread(() => { for (int i = 0; ; i++) { data[i % 64]++; Thread.Sleep(0); } });
            writer.IsBackground = true;
            writer.Start();
            var deadline = Stopwatch.StartNew();
            while (Volatile.Read(ref n) < 20 && deadline.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(5);
            Console.WriteLine("child delivered " + (Volatile.Read(ref n) >= 20 ? "enough" : "too few") + " events (" + Volatile.Read(ref n) + " in " + deadline.ElapsedMilliseconds + " ms)");
            return 0; // exits with the watcher alive, its delivery thread inside a handler
        }

        private static void RunChild(string backend)
        {
            for (int round = 0; round < 3; round++)
            {
                ChildResult r = ChildProcess.Run(ChildFlag + " " + backend, 30000);
                Assert.True(r.Exited, backend + " round " + round + ": the process exits (no hang at shutdown)");
                Assert.Equal(0, r.ExitCode, backend + " round " + round + ": exit code; stderr: " + r.Error);
                Assert.True(r.Output.Contains("child delivered enough events"), backend + " round " + round + ": child output: " + r.Output);
                Assert.Equal("", r.Error.Trim(), backend + " round " + round + ": nothing on stderr");
            }
        }

        public const string PendingChildFlag = "--child-exit-with-pending-change";

        /// <summary>The child: a handler, a write, and Main returns without CheckChanges.</summary>
        public static int PendingChild()
        {
            // Poll with a minute's interval: only the exit flush can detect the write.
            var w = new MemoryWatcher(new WatcherOptions { Backend = Backend.Poll, PollInterval = TimeSpan.FromMinutes(1) });
            var data = new byte[8];
            w.Watch(data, "data");
            w.OnChange += e => Console.WriteLine("event " + e.VariableName + " " + BitConverter.ToString(e.NewValue).Replace("-", "").ToLowerInvariant());
            data[2] = 0xAB;
            return 0;
        }

        [Test]
        public void PendingChangesAreDeliveredAtExit()
        {
            ChildResult r = ChildProcess.Run(PendingChildFlag, 30000);
            Assert.True(r.Exited, "the process exits");
            Assert.Equal(0, r.ExitCode, "exit code; stderr: " + r.Error);
            Assert.Equal("event data 0000ab0000000000\n", r.Output, "what the child printed; stderr: " + r.Error);
        }

        [Test] public void ExitWithLiveWatcherProtect() { RunChild("protect"); }

        [Test] public void ExitWithLiveWatcherPoll() { RunChild("poll"); }
    }
}
