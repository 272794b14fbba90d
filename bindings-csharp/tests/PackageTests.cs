// The SDK-style project cannot be built here (no .NET SDK), so these tests
// check what can be checked without it: the project file declares the
// netstandard2.0 target and the NuGet layout of the native library, and it
// compiles exactly the sources the Mono build compiles and tests.

using System;
using System.IO;
using System.Linq;
using System.Xml.Linq;

namespace MemWatch.Tests
{
    public class PackageTests
    {
        private static string BindingDir()
        {
            string dir = AppDomain.CurrentDomain.BaseDirectory;
            while (dir != null)
            {
                if (File.Exists(Path.Combine(dir, "MemWatch.csproj"))) return dir;
                dir = Path.GetDirectoryName(dir.TrimEnd(Path.DirectorySeparatorChar));
            }
            throw new FileNotFoundException("MemWatch.csproj not found above " + AppDomain.CurrentDomain.BaseDirectory);
        }

        [Test]
        public void CsprojTargetsNetStandardAndPacksTheNativeLibrary()
        {
            XDocument doc = XDocument.Load(Path.Combine(BindingDir(), "MemWatch.csproj"));
            XElement project = doc.Root;
            Assert.Equal("Microsoft.NET.Sdk", (string)project.Attribute("Sdk"), "SDK-style project");
            Assert.Equal("netstandard2.0", project.Descendants("TargetFramework").Single().Value, "target framework");
            Assert.Equal("MemWatch", project.Descendants("AssemblyName").Single().Value, "assembly name");
            var native = project.Descendants("None")
                .Where(e => (string)e.Attribute("Include") == "$(MemWatchNativeLib)").ToList();
            Assert.Equal(1, native.Count, "one native library item");
            Assert.Equal("true", (string)native[0].Attribute("Pack"), "native library is packed");
            Assert.Equal("runtimes/linux-x64/native/libmemwatch.so", (string)native[0].Attribute("PackagePath"), "NuGet native layout");
            Assert.Equal("libmemwatch.so", (string)native[0].Attribute("Link"), "copied next to the assembly for local builds");
            string removed = string.Join(";", project.Descendants("Compile").Select(e => (string)e.Attribute("Remove")));
            Assert.True(removed.Contains("tests/**"), "the test program is not part of the library: " + removed);
        }

        [Test]
        public void NativeImportNameMatchesThePackagedFile()
        {
            // DllImport("memwatch") probes lib + memwatch + .so = the packaged file name.
            var attr = typeof(MemoryWatcher).Assembly.GetType("MemWatch.Native")
                .GetMethod("memwatch_watcher_new", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)
                .GetCustomAttributes(typeof(System.Runtime.InteropServices.DllImportAttribute), false)
                .Cast<System.Runtime.InteropServices.DllImportAttribute>().Single();
            Assert.Equal("memwatch", attr.Value, "DllImport library name");
        }
    }
}
