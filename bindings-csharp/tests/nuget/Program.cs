// A user's program built against the MemWatch NuGet package only
// (bindings-csharp/tests/nuget/consume.sh compiles and runs it).
using System;
using System.IO;
using System.Linq;
using MemWatch;

class Program
{
    static int Main()
    {
        using (var w = new MemoryWatcher())
        {
            var data = new byte[16];
            w.Watch(data, "data");
            data[3] = 42;
            var events = w.CheckChanges();
            foreach (ChangeEvent e in events)
            {
                Console.WriteLine("{0}: {1} -> {2} at {3}", e.VariableName,
                    BitConverter.ToString(e.OldValue), BitConverter.ToString(e.NewValue),
                    string.Join(" ", e.ChangedRanges.Select(r => r.Offset + "+" + r.Length)));
            }
            Console.WriteLine("events: " + events.Count);
        }
        // Which libmemwatch.so this process loaded (consume.sh expects the packaged one).
        string native = File.ReadAllLines("/proc/self/maps")
            .Where(l => l.EndsWith("/libmemwatch.so")).Select(l => l.Substring(l.IndexOf('/'))).Distinct()
            .Single();
        Console.WriteLine("native: " + native);
        return 0;
    }
}
