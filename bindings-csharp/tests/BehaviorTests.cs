// Runs every shared scenario of tests/behavior/*.json under every backend it
// lists. The JSON files are read at test time (MEMWATCH_BEHAVIOR_DIR, or found
// by walking up from the test assembly to the repository's tests/behavior).

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace MemWatch.Tests
{
    public static class BehaviorTests
    {
        private static string FindDir()
        {
            string env = Environment.GetEnvironmentVariable("MEMWATCH_BEHAVIOR_DIR");
            if (!string.IsNullOrEmpty(env))
            {
                if (!Directory.Exists(env)) throw new DirectoryNotFoundException("MEMWATCH_BEHAVIOR_DIR=" + env + " does not exist");
                return env;
            }
            string dir = AppDomain.CurrentDomain.BaseDirectory;
            while (dir != null)
            {
                string candidate = Path.Combine(dir, "tests", "behavior");
                if (File.Exists(Path.Combine(candidate, "README.md"))) return candidate;
                dir = Path.GetDirectoryName(dir.TrimEnd(Path.DirectorySeparatorChar));
            }
            throw new DirectoryNotFoundException("tests/behavior not found above " + AppDomain.CurrentDomain.BaseDirectory + "; set MEMWATCH_BEHAVIOR_DIR");
        }

        [TestSource]
        public static IEnumerable<TestCase> Scenarios()
        {
            string dir = FindDir();
            string[] files = Directory.GetFiles(dir, "*.json").OrderBy(f => f, StringComparer.Ordinal).ToArray();
            if (files.Length == 0) throw new FileNotFoundException("no *.json scenario in " + dir);
            var cases = new List<TestCase>();
            foreach (string file in files)
            {
                var sc = (Dictionary<string, object>)Json.Parse(File.ReadAllText(file));
                string name = (string)sc["name"];
                var backends = ((List<object>)sc["backends"]).Cast<string>().ToList();
                if (backends.Count == 0) throw new FormatException(file + ": no backends");
                foreach (string backend in backends)
                {
                    string b = backend;
                    cases.Add(new TestCase("behavior/" + name + "[" + b + "]", () => Run(sc, b)));
                }
            }
            return cases;
        }

        // ---- value helpers ----------------------------------------------

        private static long Size(object v)
        {
            if (v is long) return (long)v;
            var s = v as string;
            if (s == null) throw new FormatException("bad size " + v);
            long page = MemoryWatcher.PageSize;
            int p = s.IndexOf('p');
            if (p < 0) return long.Parse(s);
            long n = long.Parse(s.Substring(0, p)) * page;
            string rest = s.Substring(p + 1);
            if (rest.Length == 0) return n;
            if (rest[0] == '+') return n + long.Parse(rest.Substring(1));
            if (rest[0] == '-') return n - long.Parse(rest.Substring(1));
            throw new FormatException("bad size " + s);
        }

        private static byte HexByte(object v)
        {
            return v == null ? (byte)0 : Bytes.Hex((string)v)[0];
        }

        private static byte[] ValueSpec(object spec)
        {
            var hex = spec as string;
            if (hex != null) return Bytes.Hex(hex);
            var d = (Dictionary<string, object>)spec;
            int len = checked((int)Size(d["len"]));
            object fill;
            var b = Bytes.Filled(len, d.TryGetValue("fill", out fill) ? HexByte(fill) : (byte)0);
            object patches;
            if (d.TryGetValue("patches", out patches))
            {
                foreach (List<object> patch in ((List<object>)patches).Cast<List<object>>())
                {
                    int off = checked((int)Size(patch[0]));
                    byte[] pb = Bytes.Hex((string)patch[1]);
                    Array.Copy(pb, 0, b, off, pb.Length);
                }
            }
            return b;
        }

        private static Backend ParseBackend(string s)
        {
            switch (s)
            {
                case "auto": return Backend.Auto;
                case "protect": return Backend.Protect;
                case "poll": return Backend.Poll;
                case "writewatch": return Backend.WriteWatch;
                default: throw new FormatException("unknown backend " + s);
            }
        }

        private static T Get<T>(Dictionary<string, object> d, string key)
        {
            object v;
            if (!d.TryGetValue(key, out v)) throw new FormatException("missing key '" + key + "'");
            return (T)v;
        }

        // ---- the runner ------------------------------------------------

        private static void Run(Dictionary<string, object> sc, string backend)
        {
            string sname = (string)sc["name"];
            var options = new WatcherOptions { Backend = ParseBackend(backend) };
            object optsObj;
            if (sc.TryGetValue("options", out optsObj))
            {
                foreach (var kv in (Dictionary<string, object>)optsObj)
                {
                    switch (kv.Key)
                    {
                        case "max_value_bytes": options.MaxValueBytes = Size(kv.Value); break;
                        case "preview_bytes": options.PreviewBytes = Size(kv.Value); break;
                        case "snapshots": options.Snapshots = (bool)kv.Value; break;
                        case "writable_window_ms": options.WritableWindow = TimeSpan.FromMilliseconds((long)kv.Value); break;
                        default: throw new FormatException(sname + ": unknown option " + kv.Key);
                    }
                }
            }

            var buffers = new Dictionary<string, Mapping>();
            try
            {
                foreach (Dictionary<string, object> b in Get<List<object>>(sc, "buffers").Cast<Dictionary<string, object>>())
                {
                    var m = new Mapping(Size(b["size"]));
                    buffers[(string)b["name"]] = m;
                    object fill;
                    m.Fill(0, m.Size, b.TryGetValue("fill", out fill) ? HexByte(fill) : (byte)0);
                }
                var delivered = new List<ChangeEvent>();
                using (var w = new MemoryWatcher(options))
                {
                    var ids = new Dictionary<string, int>();
                    foreach (Dictionary<string, object> r in Get<List<object>>(sc, "regions").Cast<Dictionary<string, object>>())
                    {
                        Mapping m = buffers[(string)r["buffer"]];
                        object meta;
                        r.TryGetValue("metadata", out meta);
                        ids[(string)r["key"]] = w.Watch(m.At(Size(r["offset"])), Size(r["length"]), (string)r["name"], (string)meta);
                    }
                    var steps = Get<List<object>>(sc, "steps");
                    for (int i = 0; i < steps.Count; i++)
                    {
                        string where = sname + " [" + backend + "] step " + i;
                        var step = (Dictionary<string, object>)steps[i];
                        if (step.Count != 1) throw new FormatException(where + ": a step has exactly one key");
                        var kv = step.First();
                        switch (kv.Key)
                        {
                            case "write":
                            {
                                var wr = (Dictionary<string, object>)kv.Value;
                                Mapping m = buffers[(string)wr["buffer"]];
                                long off = Size(wr["offset"]);
                                object hex;
                                if (wr.TryGetValue("hex", out hex)) m.Write(off, Bytes.Hex((string)hex));
                                else m.Fill(off, Size(wr["len"]), HexByte(wr["byte"]));
                                break;
                            }
                            case "check":
                                Check(w, ids, (List<object>)kv.Value, where);
                                break;
                            case "unwatch":
                            {
                                var u = (Dictionary<string, object>)kv.Value;
                                bool got = w.Unwatch(ids[(string)u["region"]]);
                                Assert.Equal((bool)u["expect"], got, where + ": Unwatch(" + u["region"] + ")");
                                break;
                            }
                            case "constants":
                            {
                                var c = (Dictionary<string, object>)kv.Value;
                                long want = Convert.ToInt64(c["exit_flush_timeout_ms"]);
                                Assert.Equal(want, (long)MemoryWatcher.ExitFlushTimeout.TotalMilliseconds, where + ": ExitFlushTimeout (ms)");
                                break;
                            }
                            case "unwatch_unknown":
                            {
                                var u = (Dictionary<string, object>)kv.Value;
                                bool got = w.Unwatch(unchecked((int)4000000000u));
                                Assert.Equal((bool)u["expect"], got, where + ": Unwatch(4000000000)");
                                break;
                            }
                            case "watch_error":
                            {
                                var e = (Dictionary<string, object>)kv.Value;
                                object isNull;
                                IntPtr addr = IntPtr.Zero;
                                if (!(e.TryGetValue("null", out isNull) && (bool)isNull))
                                    addr = buffers[(string)e["buffer"]].At(Size(e["offset"]));
                                long len = Size(e["length"]);
                                ExpectError((string)e["expect"], () => w.Watch(addr, len, "bad"), where + ": Watch");
                                break;
                            }
                            case "check_error":
                                ExpectError((string)((Dictionary<string, object>)kv.Value)["expect"], () => w.CheckChanges(), where + ": CheckChanges");
                                break;
                            case "close":
                                w.Dispose();
                                break;
                            case "stats":
                                CheckStats(w.GetStats(), (Dictionary<string, object>)kv.Value, where);
                                break;
                            case "set_callback":
                                if ((bool)kv.Value) w.SetCallback(e => { lock (delivered) delivered.Add(e); });
                                else w.SetCallback(null);
                                break;
                            case "check_callback":
                            {
                                Assert.Equal(0, w.CheckChanges().Count, where + ": with a callback, CheckChanges returns no event");
                                List<ChangeEvent> got;
                                lock (delivered)
                                {
                                    got = new List<ChangeEvent>(delivered);
                                    delivered.Clear();
                                }
                                Compare(got, ids, (List<object>)kv.Value, where);
                                break;
                            }
                            default:
                                throw new FormatException(where + ": unknown step " + kv.Key);
                        }
                    }
                }
            }
            finally
            {
                foreach (Mapping m in buffers.Values) m.Dispose();
            }
        }

        private static void Check(MemoryWatcher w, Dictionary<string, int> ids, List<object> expected, string where)
        {
            Compare(w.CheckChanges(), ids, expected, where);
        }

        // The engine's error kind name (tests/behavior/README.md) of a documented exception.
        private static string KindOf(Exception e)
        {
            var mw = e as MemWatchArgumentException;
            if (mw != null) return ErrorKind(mw.Error);
            if (e is ObjectDisposedException) return "closed";
            if (e is MemWatchNotSupportedException) return "unsupported";
            var other = e as MemWatchException;
            if (other != null) return ErrorKind(other.Error);
            if (e is ArgumentException) return "invalid_argument";
            return e.GetType().Name;
        }

        private static string ErrorKind(MemWatchError error)
        {
            switch (error)
            {
                case MemWatchError.InvalidArgument: return "invalid_argument";
                case MemWatchError.Unmapped: return "unmapped";
                case MemWatchError.ReadOnly: return "read_only";
                case MemWatchError.Overlap: return "overlap";
                case MemWatchError.Unsupported: return "unsupported";
                case MemWatchError.Closed: return "closed";
                case MemWatchError.Os: return "os";
                default: return error.ToString();
            }
        }

        private static void ExpectError(string kind, Action call, string where)
        {
            try
            {
                call();
            }
            catch (Exception e)
            {
                Assert.Equal(kind, KindOf(e), where + ": error kind of " + e.GetType().Name + ": " + e.Message);
                return;
            }
            throw new Exception(where + ": expected a " + kind + " error, the call succeeded");
        }

        // snake_case scenario name -> WatcherStats property (fallback_regions -> FallbackRegions).
        private static object StatsField(WatcherStats s, string name, string where)
        {
            string pascal = string.Concat(name.Split('_').Select(p => char.ToUpperInvariant(p[0]) + p.Substring(1)));
            var prop = typeof(WatcherStats).GetProperty(pascal);
            if (prop == null) throw new Exception(where + ": stats field " + name + " missing (no WatcherStats." + pascal + ")");
            return prop.GetValue(s, null);
        }

        private static void CheckStats(WatcherStats s, Dictionary<string, object> spec, string where)
        {
            object fields, equal;
            if (spec.TryGetValue("fields", out fields))
                foreach (object f in (List<object>)fields) StatsField(s, (string)f, where);
            if (spec.TryGetValue("equal", out equal))
                foreach (var kv in (Dictionary<string, object>)equal)
                    Assert.Equal(Convert.ToString(kv.Value), Convert.ToString(StatsField(s, kv.Key, where)), where + ": stats " + kv.Key);
        }

        private static void Compare(IReadOnlyList<ChangeEvent> events, Dictionary<string, int> ids, List<object> expected, string where)
        {
            string actual = string.Join("; ", events.Select(e => e.ToString()));
            Assert.Equal(expected.Count, events.Count, where + ": number of events (got: " + actual + ")");
            var regionName = ids.ToDictionary(kv => kv.Value, kv => kv.Key);
            foreach (ChangeEvent e in events)
                Assert.True(regionName.ContainsKey(e.RegionId), where + ": event for a region id the scenario never watched: " + e);
            foreach (Dictionary<string, object> exp in expected.Cast<Dictionary<string, object>>())
            {
                string key = (string)exp["region"];
                int id = ids[key];
                var matching = events.Where(e => e.RegionId == id).ToList();
                Assert.Equal(1, matching.Count, where + ": events for region '" + key + "' (got: " + actual + ")");
                ChangeEvent ev = matching[0];
                string at = where + ", region '" + key + "'";
                foreach (var kv in exp)
                {
                    switch (kv.Key)
                    {
                        case "region":
                            break;
                        case "variable_name":
                            Assert.Equal((string)kv.Value, ev.VariableName, at + ": variable_name");
                            break;
                        case "metadata":
                            Assert.Equal((string)kv.Value, ev.Metadata, at + ": metadata");
                            break;
                        case "how_big":
                            Assert.Equal(Size(kv.Value), ev.HowBig, at + ": how_big");
                            break;
                        case "coalesced":
                            Assert.Equal(Size(kv.Value), (long)ev.Coalesced, at + ": coalesced");
                            break;
                        case "changed_ranges":
                            var ranges = ((List<object>)kv.Value).Cast<List<object>>()
                                .Select(r => new ByteRange(Size(r[0]), Size(r[1]))).ToList();
                            Assert.Ranges(ranges, ev.ChangedRanges, at + ": changed_ranges");
                            break;
                        case "old_value":
                            Assert.Bytes(kv.Value == null ? null : ValueSpec(kv.Value), ev.OldValue, at + ": old_value");
                            break;
                        case "new_value":
                            Assert.Bytes(kv.Value == null ? null : ValueSpec(kv.Value), ev.NewValue, at + ": new_value");
                            break;
                        case "old_preview":
                            Assert.Bytes(kv.Value == null ? null : ValueSpec(kv.Value), ev.OldPreview, at + ": old_preview");
                            break;
                        case "new_preview":
                            Assert.Bytes(kv.Value == null ? null : ValueSpec(kv.Value), ev.NewPreview, at + ": new_preview");
                            break;
                        default:
                            throw new FormatException(at + ": unknown expected field " + kv.Key);
                    }
                }
                Assert.Equal(5, ev.AdapterId, at + ": adapter_id (C#)");
            }
        }
    }
}
