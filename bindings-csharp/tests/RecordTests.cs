// MemoryWatcher.RecordTo: events recorded into SQLite and read back (by the
// sqlite3 shell) with exact old/new bytes; hostile names; errors.

using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;

namespace MemWatch.Tests
{
    public class RecordTests
    {
        private static string TempDb(string what)
        {
            string dir = Path.Combine(Path.GetTempPath(), "memwatch-cs-record-" + Process.GetCurrentProcess().Id + "-" + what);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            Directory.CreateDirectory(dir);
            return Path.Combine(dir, "events.db");
        }

        private static string[] Query(string db, string sql)
        {
            var psi = new ProcessStartInfo("sqlite3")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.Arguments = "'" + db + "' \"" + sql + "\"";
            using (Process p = Process.Start(psi))
            {
                string output = p.StandardOutput.ReadToEnd();
                string err = p.StandardError.ReadToEnd();
                p.WaitForExit();
                Assert.Equal(0, p.ExitCode, "sqlite3 exit code; stderr: " + err);
                return output.Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries);
            }
        }

        private static string Hex(string s)
        {
            return BitConverter.ToString(Encoding.UTF8.GetBytes(s)).Replace("-", "");
        }

        [Test]
        public void EventsAreRecordedWithExactBytes()
        {
            string db = TempDb("exact");
            using (var w = new MemoryWatcher(Backend.Poll))
            {
                byte[] data = Encoding.ASCII.GetBytes("abcd");
                w.Watch(data, "csbuf", "meta");
                using (Recorder rec = w.RecordTo(db))
                {
                    data[1] = (byte)'X';
                    Assert.Equal(1, w.CheckChanges().Count, "first change");
                    data[3] = 0;
                    Assert.Equal(1, w.CheckChanges().Count, "second change");
                    Assert.True(rec.Flush(TimeSpan.FromSeconds(10)), "flush");
                    RecorderStats s = rec.GetStats();
                    Assert.Equal(2L, s.Written, "written");
                    Assert.Equal(0L, s.Dropped, "dropped");
                    Assert.Equal(0L, s.Queued, "queued");
                    Assert.True(s.Connected, "connected");
                    string[] rows = Query(db, "SELECT variable_name, hex(old_value), hex(new_value), changed_ranges, metadata, adapter FROM memwatch_events ORDER BY seq");
                    Assert.Equal("csbuf|61626364|61586364|[[1,1]]|meta|5\ncsbuf|61586364|61586300|[[3,1]]|meta|5", string.Join("\n", rows), "rows");
                    string[] pid = Query(db, "SELECT pid FROM memwatch_recordings WHERE recording_id = " + s.RecordingId);
                    Assert.Equal(Process.GetCurrentProcess().Id.ToString(), string.Join(",", pid), "pid");
                }
            }
        }

        [Test]
        public void HostileNamesAreStoredByteExact()
        {
            string db = TempDb("hostile");
            string[] names = { "it's \"q\"", "x'); DROP TABLE memwatch_events; --", "ünï\U0010ffff" };
            using (var w = new MemoryWatcher(Backend.Poll))
            {
                byte[][] bufs = names.Select(n => new byte[4]).ToArray();
                for (int i = 0; i < names.Length; i++) w.Watch(bufs[i], names[i], "m:" + names[i]);
                using (Recorder rec = w.RecordTo("sqlite:" + db))
                {
                    foreach (byte[] b in bufs) b[2] = 0x42;
                    Assert.Equal(names.Length, w.CheckChanges().Count, "changes");
                    Assert.True(rec.Flush(TimeSpan.FromSeconds(10)), "flush");
                }
            }
            string[] got = Query(db, "SELECT hex(variable_name_bytes) || '|' || hex(metadata_bytes) || '|' || hex(new_value) FROM memwatch_events").OrderBy(x => x, StringComparer.Ordinal).ToArray();
            string[] want = names.Select(n => Hex(n) + "|" + Hex("m:" + n) + "|00004200").OrderBy(x => x, StringComparer.Ordinal).ToArray();
            Assert.Equal(string.Join("\n", want), string.Join("\n", got), "rows");
        }

        [Test]
        public void BadUrlsAndUnreachableDatabasesThrow()
        {
            var w = new MemoryWatcher(Backend.Poll);
            foreach (string bad in new[] { "", "mysql://localhost/x", "http://example.invalid/" })
            {
                var e = Assert.Throws<MemWatchArgumentException>(() => w.RecordTo(bad), "url " + bad);
                Assert.True(e.Message.Contains("URL"), "message: " + e.Message);
            }
            Assert.Throws<ArgumentNullException>(() => w.RecordTo(null), "null url");
            var d = Assert.Throws<MemWatchException>(() => w.RecordTo("/nonexistent-memwatch-dir/x/events.db"), "missing dir");
            Assert.Equal(MemWatchError.Database, d.Error, "error code");
            d = Assert.Throws<MemWatchException>(() => w.RecordTo("postgresql://memwatch@127.0.0.1:1/memwatch"), "unreachable");
            Assert.True(d.Message.Contains("PostgreSQL"), "message: " + d.Message);
            Recorder rec = w.RecordTo(TempDb("ok"));
            Assert.Throws<ArgumentOutOfRangeException>(() => rec.Flush(TimeSpan.FromSeconds(-1)), "negative timeout");
            rec.Dispose();
            rec.Dispose();
            Assert.Throws<ObjectDisposedException>(() => rec.GetStats(), "stats after dispose");
            w.Dispose();
            Assert.Throws<ObjectDisposedException>(() => w.RecordTo(TempDb("late")), "after dispose");
        }
    }
}
