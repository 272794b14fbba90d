// memwatch from C#: the seed's snippet, then the polling style.
//   bash examples/csharp/run.sh        (builds libmemwatch and the binding, runs this under mono)

using System;
using System.Linq;
using MemWatch;

class Example
{
    static int Main()
    {
        // The seed's snippet.
        var watcher = new MemoryWatcher();
        byte[] data = new byte[100];
        watcher.Watch(data, "buffer");
        watcher.OnChange += (e) => Console.WriteLine(e.VariableName + " changed");
        data[0] = 42;
        // Handlers run on memwatch's delivery thread; CheckChanges() returns once
        // every change made before it was delivered, so the line above is printed now.
        watcher.CheckChanges();
        watcher.Dispose();

        // Polling style: no handler, CheckChanges() returns the events.
        using (var w = new MemoryWatcher(Backend.Protect))
        {
            var counter = new byte[8];
            int id = w.Watch(counter, "counter", "unit=ticks");
            counter[3] = 7;
            counter[4] = 9;
            foreach (ChangeEvent e in w.CheckChanges())
            {
                Console.WriteLine("{0} (region {1}, {2} bytes) changed at {3}", e.VariableName, e.RegionId, e.HowBig,
                    string.Join(" ", e.ChangedRanges.Select(r => "[" + r.Offset + ".." + (r.Offset + r.Length) + ")")));
                Console.WriteLine("  old {0}", BitConverter.ToString(e.OldValue));
                Console.WriteLine("  new {0}", BitConverter.ToString(e.NewValue));
                Console.WriteLine("  metadata {0}, writer thread {1}", e.Metadata,
                    e.ThreadId.HasValue ? e.ThreadId.Value.ToString() : "unknown");
            }
            Console.WriteLine(w.GetStats());
            w.Unwatch(id);
        }
        return 0;
    }
}
