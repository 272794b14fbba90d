using System;
using System.Runtime.InteropServices;
using System.Text;

namespace MemWatch
{
    /// <summary>Error codes of the memwatch C ABI (memwatch_error_t).</summary>
    public enum MemWatchError
    {
        /// <summary>No error.</summary>
        None = 0,
        /// <summary>A bad argument: null address, zero length, bad option.</summary>
        InvalidArgument = -1,
        /// <summary>The memory is not (fully) mapped.</summary>
        Unmapped = -2,
        /// <summary>The memory is mapped but not writable, so it can never change.</summary>
        ReadOnly = -3,
        /// <summary>The range overlaps a region this watcher already watches.</summary>
        Overlap = -4,
        /// <summary>The requested backend cannot be used on this machine.</summary>
        Unsupported = -5,
        /// <summary>The watcher was closed.</summary>
        Closed = -6,
        /// <summary>An operating-system call failed.</summary>
        Os = -7,
        /// <summary>A bug in memwatch (a caught panic).</summary>
        Internal = -8,
        /// <summary>RecordTo could not open or reach the database.</summary>
        Database = -9,
    }

    /// <summary>
    /// A memory range that cannot be watched, or a bad option: invalid, unmapped,
    /// read-only or overlapping memory. <see cref="Error"/> tells which.
    /// </summary>
    public sealed class MemWatchArgumentException : ArgumentException
    {
        /// <summary>The memwatch error code behind this exception.</summary>
        public MemWatchError Error { get; private set; }

        /// <summary>Creates the exception.</summary>
        /// <param name="error">The memwatch error code.</param>
        /// <param name="message">What went wrong.</param>
        /// <param name="paramName">The argument at fault, if known.</param>
        public MemWatchArgumentException(MemWatchError error, string message, string paramName)
            : base(message, paramName)
        {
            Error = error;
        }
    }

    /// <summary>The requested backend is not available on this machine (the message says why).</summary>
    public sealed class MemWatchNotSupportedException : NotSupportedException
    {
        /// <summary>Always <see cref="MemWatchError.Unsupported"/>.</summary>
        public MemWatchError Error { get { return MemWatchError.Unsupported; } }

        /// <summary>Creates the exception.</summary>
        /// <param name="message">Why the backend cannot be used.</param>
        public MemWatchNotSupportedException(string message) : base(message) { }
    }

    /// <summary>An operating-system failure or an internal memwatch error.</summary>
    public sealed class MemWatchException : Exception
    {
        /// <summary>The memwatch error code behind this exception.</summary>
        public MemWatchError Error { get; private set; }

        /// <summary>Creates the exception.</summary>
        /// <param name="error">The memwatch error code.</param>
        /// <param name="message">What went wrong.</param>
        public MemWatchException(MemWatchError error, string message) : base(message)
        {
            Error = error;
        }
    }

    /// <summary>Maps C ABI return codes to .NET exceptions.</summary>
    internal static class Errors
    {
        /// <summary>
        /// Throws the exception for a negative return code. Must be called on the
        /// thread that made the failing call, right after it (the message is thread-local).
        /// </summary>
        internal static void Check(int rc, string operation, string paramName = null)
        {
            if (rc >= 0) return;
            throw FromCode(rc, operation + ": " + Native.LastErrorMessage(), paramName);
        }

        internal static Exception FromCode(int rc, string message, string paramName)
        {
            switch ((MemWatchError)rc)
            {
                case MemWatchError.InvalidArgument:
                case MemWatchError.Unmapped:
                case MemWatchError.ReadOnly:
                case MemWatchError.Overlap:
                    return new MemWatchArgumentException((MemWatchError)rc, message, paramName);
                case MemWatchError.Unsupported:
                    return new MemWatchNotSupportedException(message);
                case MemWatchError.Closed:
                    return new ObjectDisposedException(typeof(MemoryWatcher).Name, message);
                case MemWatchError.Os:
                    return new MemWatchException(MemWatchError.Os, message);
                case MemWatchError.Database:
                    return new MemWatchException(MemWatchError.Database, message);
                default:
                    return new MemWatchException(MemWatchError.Internal, message + " (code " + rc + ")");
            }
        }
    }

    /// <summary>UTF-8 conversions for the C ABI (independent of the runtime's default string marshalling).</summary>
    internal static class Utf8
    {
        /// <summary>A NUL-terminated UTF-8 copy of <paramref name="s"/>; null stays null.</summary>
        internal static byte[] ToNative(string s, string paramName)
        {
            if (s == null) return null;
            if (s.IndexOf('\0') >= 0)
                throw new ArgumentException("the string must not contain NUL characters", paramName);
            byte[] bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        /// <summary>Decodes a NUL-terminated UTF-8 string; IntPtr.Zero gives null.</summary>
        internal static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0) len++;
            if (len == 0) return string.Empty;
            byte[] buf = new byte[len];
            Marshal.Copy(p, buf, 0, len);
            return Encoding.UTF8.GetString(buf);
        }

        /// <summary>Decodes a NUL-terminated UTF-8 string held in a fixed-size array.</summary>
        internal static string FromFixed(byte[] buf)
        {
            if (buf == null) return string.Empty;
            int len = Array.IndexOf(buf, (byte)0);
            if (len < 0) len = buf.Length;
            return Encoding.UTF8.GetString(buf, 0, len);
        }
    }
}
