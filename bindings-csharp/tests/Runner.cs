// A small test runner for Mono (no NUnit/xUnit console runner works here):
// discovers [Test] methods and [TestSource] factories by reflection, runs each
// with a timeout, and prints "N passed, N failed" alone on the last line.
// Exit code 0 only when every test passed and at least one ran.
//
// Usage: mono MemWatch.Tests.exe [substring-filter ...]

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Threading;

namespace MemWatch.Tests
{
    /// <summary>Marks a parameterless instance or static test method.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class TestAttribute : Attribute { }

    /// <summary>Marks a static method returning IEnumerable&lt;TestCase&gt; (generated tests).</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class TestSourceAttribute : Attribute { }

    /// <summary>A named generated test.</summary>
    public sealed class TestCase
    {
        public readonly string Name;
        public readonly Action Body;
        public TestCase(string name, Action body) { Name = name; Body = body; }
    }

    /// <summary>Thrown by a failed assertion.</summary>
    public sealed class AssertionException : Exception
    {
        public AssertionException(string message) : base(message) { }
    }

    /// <summary>Thrown to skip a test that cannot run here; reported and counted as skipped, never as passed.</summary>
    public sealed class SkipException : Exception
    {
        public SkipException(string reason) : base(reason) { }
    }

    /// <summary>Assertions.</summary>
    public static class Assert
    {
        public static void True(bool cond, string what)
        {
            if (!cond) throw new AssertionException(what);
        }

        public static void False(bool cond, string what) { True(!cond, what); }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new AssertionException(what + ": expected <" + Show(expected) + "> but got <" + Show(actual) + ">");
        }

        public static void Null(object o, string what)
        {
            if (o != null) throw new AssertionException(what + ": expected null but got <" + Show(o) + ">");
        }

        public static void NotNull(object o, string what)
        {
            if (o == null) throw new AssertionException(what + ": expected a value but got null");
        }

        public static void Bytes(byte[] expected, byte[] actual, string what)
        {
            if (expected == null && actual == null) return;
            if (expected == null || actual == null || !expected.SequenceEqual(actual))
                throw new AssertionException(what + ": expected " + Hex(expected) + " but got " + Hex(actual));
        }

        public static void Ranges(IList<ByteRange> expected, IReadOnlyList<ByteRange> actual, string what)
        {
            if (expected.Count != actual.Count || !expected.SequenceEqual(actual))
                throw new AssertionException(what + ": expected ranges " + string.Join(",", expected)
                    + " but got " + string.Join(",", actual));
        }

        /// <summary>Runs <paramref name="body"/> and returns the exception of type T it must throw.</summary>
        public static T Throws<T>(Action body, string what) where T : Exception
        {
            try
            {
                body();
            }
            catch (T ex)
            {
                if (string.IsNullOrEmpty(ex.Message)) throw new AssertionException(what + ": " + typeof(T).Name + " without a message");
                return ex;
            }
            catch (Exception ex)
            {
                throw new AssertionException(what + ": expected " + typeof(T).Name + " but got " + ex.GetType().Name + ": " + ex.Message);
            }
            throw new AssertionException(what + ": expected " + typeof(T).Name + " but nothing was thrown");
        }

        public static string Hex(byte[] b)
        {
            if (b == null) return "null";
            if (b.Length > 48)
            {
                // Long values: show only where they differ from a zero fill, compactly.
                var parts = new List<string>();
                for (int i = 0; i < b.Length; i++) if (b[i] != 0) parts.Add(i + ":" + b[i].ToString("x2"));
                return "[" + b.Length + " bytes, nonzero " + string.Join(" ", parts.Take(32)) + (parts.Count > 32 ? " ..." : "") + "]";
            }
            return "\"" + BitConverter.ToString(b).Replace("-", "").ToLowerInvariant() + "\"";
        }

        private static string Show(object o)
        {
            if (o == null) return "null";
            var b = o as byte[];
            return b != null ? Hex(b) : o.ToString();
        }
    }

    public static class Runner
    {
        private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

        public static int Main(string[] args)
        {
            if (args.Length == 2 && args[0] == ShutdownTests.ChildFlag) return ShutdownTests.Child(args[1]);
            if (args.Length == 1 && args[0] == ShutdownTests.PendingChildFlag) return ShutdownTests.PendingChild();
            if (args.Length >= 2 && args[0] == ValueStoreTests.ReaderFlag) return ValueStoreTests.Reader(args[1], args.Skip(2).ToArray());
            var tests = Discover(Assembly.GetExecutingAssembly());
            if (args.Length > 0)
                tests = tests.Where(t => args.Any(a => t.Name.IndexOf(a, StringComparison.OrdinalIgnoreCase) >= 0)).ToList();
            Console.WriteLine("running " + tests.Count + " tests under " + RuntimeName());
            int passed = 0, failed = 0, skipped = 0;
            var failures = new List<string>();
            foreach (TestCase t in tests)
            {
                var sw = Stopwatch.StartNew();
                Exception error = null;
                var thread = new Thread(() =>
                {
                    try { t.Body(); }
                    catch (TargetInvocationException ex) { error = ex.InnerException ?? ex; }
                    catch (Exception ex) { error = ex; }
                }, 16 * 1024 * 1024);
                thread.IsBackground = true;
                thread.Start();
                if (!thread.Join(Timeout))
                {
                    failed++;
                    Console.WriteLine("FAIL " + t.Name + ": timed out after " + Timeout.TotalSeconds + " s (hang)");
                    Console.WriteLine(passed + " passed, " + failed + " failed");
                    Console.Out.Flush();
                    Environment.Exit(1);
                }
                if (error is SkipException)
                {
                    skipped++;
                    Console.WriteLine("skip " + t.Name + ": " + error.Message);
                }
                else if (error == null)
                {
                    passed++;
                    Console.WriteLine("ok   " + t.Name + " (" + sw.ElapsedMilliseconds + " ms)");
                }
                else
                {
                    failed++;
                    string msg = error is AssertionException ? error.Message : error.ToString();
                    Console.WriteLine("FAIL " + t.Name + ": " + msg);
                    failures.Add(t.Name);
                }
            }
            if (failures.Count > 0)
                Console.WriteLine("failed: " + string.Join(", ", failures));
            Console.WriteLine(passed + " passed, " + failed + " failed" + (skipped > 0 ? ", " + skipped + " skipped" : ""));
            return failed == 0 && passed > 0 ? 0 : 1;
        }

        private static string RuntimeName()
        {
            Type mono = Type.GetType("Mono.Runtime");
            if (mono == null) return ".NET " + Environment.Version;
            MethodInfo m = mono.GetMethod("GetDisplayName", BindingFlags.NonPublic | BindingFlags.Static);
            return "Mono " + (m != null ? m.Invoke(null, null) : Environment.Version.ToString());
        }

        private static List<TestCase> Discover(Assembly asm)
        {
            var list = new List<TestCase>();
            foreach (Type type in asm.GetTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
            {
                foreach (MethodInfo m in type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static)
                             .OrderBy(x => x.MetadataToken))
                {
                    if (m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0)
                    {
                        MethodInfo method = m;
                        Type owner = type;
                        list.Add(new TestCase(type.Name + "." + m.Name, () =>
                        {
                            object target = method.IsStatic ? null : Activator.CreateInstance(owner);
                            try { method.Invoke(target, null); }
                            finally { var d = target as IDisposable; if (d != null) d.Dispose(); }
                        }));
                    }
                    else if (m.GetCustomAttributes(typeof(TestSourceAttribute), false).Length > 0)
                    {
                        List<TestCase> cases;
                        try
                        {
                            cases = ((IEnumerable<TestCase>)m.Invoke(null, null)).ToList();
                        }
                        catch (Exception ex)
                        {
                            // A broken source is a failure, never a silently smaller suite.
                            Exception inner = ex is TargetInvocationException && ex.InnerException != null ? ex.InnerException : ex;
                            cases = new List<TestCase> { new TestCase(m.Name, () => { throw new AssertionException("test source failed: " + inner); }) };
                        }
                        foreach (TestCase c in cases) list.Add(new TestCase(type.Name + "." + c.Name, c.Body));
                    }
                }
            }
            return list;
        }
    }
}
