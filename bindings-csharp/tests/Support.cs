using System;
using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Threading;

namespace MemWatch.Tests
{
    /// <summary>libc calls the tests need (page-aligned mappings, thread ids).</summary>
    public static class LibC
    {
        public const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
        public const int MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20;

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern IntPtr mmap(IntPtr addr, UIntPtr length, int prot, int flags, int fd, IntPtr offset);

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern int munmap(IntPtr addr, UIntPtr length);

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern int mprotect(IntPtr addr, UIntPtr length, int prot);

        [DllImport("libc.so.6")]
        public static extern int gettid();

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern int pipe(int[] fds);

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern IntPtr read(int fd, IntPtr buf, UIntPtr count);

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern IntPtr write(int fd, byte[] buf, UIntPtr count);

        [DllImport("libc.so.6", SetLastError = true)]
        public static extern int close(int fd);

        public const int EFAULT = 14;
    }

    /// <summary>An anonymous page-aligned mapping, unmapped on Dispose.</summary>
    public sealed class Mapping : IDisposable
    {
        public readonly IntPtr Address;
        public readonly long Size;
        private bool _disposed;

        public Mapping(long size, int prot = LibC.PROT_READ | LibC.PROT_WRITE)
        {
            Size = size;
            Address = LibC.mmap(IntPtr.Zero, new UIntPtr((ulong)size), prot, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, IntPtr.Zero);
            if (Address == new IntPtr(-1)) throw new InvalidOperationException("mmap failed: errno " + Marshal.GetLastWin32Error());
        }

        public IntPtr At(long offset) { return new IntPtr(Address.ToInt64() + offset); }

        public void Write(long offset, byte[] bytes)
        {
            if (offset < 0 || offset + bytes.Length > Size) throw new ArgumentOutOfRangeException("offset");
            Marshal.Copy(bytes, 0, At(offset), bytes.Length);
        }

        public void Fill(long offset, long len, byte value)
        {
            var b = new byte[len];
            for (long i = 0; i < len; i++) b[i] = value;
            Write(offset, b);
        }

        public byte[] Read(long offset, int len)
        {
            var b = new byte[len];
            Marshal.Copy(At(offset), b, 0, len);
            return b;
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            LibC.munmap(Address, new UIntPtr((ulong)Size));
        }
    }

    public static class Bytes
    {
        public static byte[] Hex(string hex)
        {
            if (hex.Length % 2 != 0) throw new FormatException("odd hex string " + hex);
            var b = new byte[hex.Length / 2];
            for (int i = 0; i < b.Length; i++) b[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16);
            return b;
        }

        public static byte[] Filled(int len, byte fill)
        {
            var b = new byte[len];
            for (int i = 0; i < len; i++) b[i] = fill;
            return b;
        }

        /// <summary>len bytes of fill with (offset, bytes) patches laid over.</summary>
        public static byte[] Patched(int len, byte fill, params object[] patches)
        {
            var b = Filled(len, fill);
            for (int i = 0; i < patches.Length; i += 2)
            {
                int off = (int)patches[i];
                byte[] p = (byte[])patches[i + 1];
                Array.Copy(p, 0, b, off, p.Length);
            }
            return b;
        }
    }

    /// <summary>What a child process run by <see cref="ChildProcess"/> did.</summary>
    public sealed class ChildResult
    {
        /// <summary>False if it was still running at the timeout (it is then killed).</summary>
        public bool Exited;
        /// <summary>Exit code (meaningful when <see cref="Exited"/>).</summary>
        public int ExitCode;
        /// <summary>Everything it wrote to stdout.</summary>
        public string Output;
        /// <summary>Everything it wrote to stderr ("" if nothing).</summary>
        public string Error;
    }

    /// <summary>Runs this test assembly again under mono, as a child process.</summary>
    public static class ChildProcess
    {
        /// <summary>Starts <c>mono --debug THIS.exe args</c>, collects its output and waits up to <paramref name="timeoutMs"/>.</summary>
        public static ChildResult Run(string args, int timeoutMs)
        {
            string mono = Process.GetCurrentProcess().MainModule.FileName;
            string exe = Assembly.GetExecutingAssembly().Location;
            var psi = new ProcessStartInfo(mono, "--debug \"" + exe + "\" " + args)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using (Process p = Process.Start(psi))
            {
                string err = null;
                var errReader = new Thread(() => err = p.StandardError.ReadToEnd());
                errReader.Start();
                string output = p.StandardOutput.ReadToEnd();
                bool exited = p.WaitForExit(timeoutMs);
                if (!exited)
                {
                    try { p.Kill(); } catch (Exception) { }
                }
                errReader.Join(10000);
                return new ChildResult { Exited = exited, ExitCode = exited ? p.ExitCode : -1, Output = output, Error = err ?? "" };
            }
        }
    }
}
