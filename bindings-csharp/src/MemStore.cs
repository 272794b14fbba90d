using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace MemWatch
{
    /// <summary>Error codes of MemStream's C API (CACHE_ERR_* in memwatch_store.h).</summary>
    public enum MemStoreError
    {
        /// <summary>No such store, or no such key.</summary>
        NotFound = -1,
        /// <summary>A bad argument: invalid store name, empty key. <see cref="MemStore.Open"/> also reports every failure other than <see cref="NotFound"/> with this code (the message says what happened).</summary>
        Invalid = -2,
        /// <summary>The key is longer than the store allows.</summary>
        KeyTooLong = -3,
        /// <summary>The value can never fit in this store.</summary>
        ValueTooLarge = -4,
        /// <summary>The store is full (refusing policy).</summary>
        Full = -5,
        /// <summary>The buffer was too small.</summary>
        BufferTooSmall = -6,
        /// <summary>Not a store, wrong version, truncated or corrupt.</summary>
        Corrupt = -7,
        /// <summary>The store exists but its creator died before initializing it.</summary>
        NotInitialized = -8,
        /// <summary>The writer lock timed out.</summary>
        Lock = -9,
        /// <summary>Too many pinned values.</summary>
        TooManyPins = -10,
        /// <summary>A system call failed.</summary>
        Os = -11,
        /// <summary>An internal error in the store.</summary>
        Panic = -12,
        /// <summary>The writer lock is held elsewhere.</summary>
        Busy = -13,
    }

    /// <summary>A MemStream store operation failed; <see cref="Error"/> says how.</summary>
    public sealed class MemStoreException : Exception
    {
        /// <summary>The store's error code.</summary>
        public MemStoreError Error { get; private set; }

        /// <summary>Creates the exception.</summary>
        /// <param name="error">The store's error code.</param>
        /// <param name="message">What went wrong.</param>
        public MemStoreException(MemStoreError error, string message) : base(message)
        {
            Error = error;
        }
    }

    /// <summary>Owns a cache_t handle; releasing it calls cache_close.</summary>
    internal sealed class StoreHandle : SafeHandle
    {
        /// <summary>An empty handle (the marshaller fills it in).</summary>
        public StoreHandle() : base(IntPtr.Zero, true) { }

        /// <summary>Whether no store is held (cache_open returned NULL).</summary>
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>Closes the native handle; the store itself stays.</summary>
        protected override bool ReleaseHandle()
        {
            return Native.cache_close(handle) == 0;
        }
    }

    /// <summary>
    /// A read handle on a MemStream store: a named key-value store in shared memory
    /// (/dev/shm/&lt;name&gt;) that any process can open, such as the one a watcher's
    /// large values go to (<see cref="MemoryWatcher.SetValueStore"/>). Thread-safe.
    /// </summary>
    /// <example>
    /// <code>
    /// using (MemStore store = MemStore.Open(name))
    /// {
    ///     byte[] oldValue = store.Get(e.StorageKeyOld);   // null when absent
    ///     byte[] newValue = store.Get(e.StorageKeyNew);
    /// }
    /// </code>
    /// </example>
    public sealed class MemStore : IDisposable
    {
        private readonly StoreHandle _handle;
        private int _sizeHint = 4096; // buffer size for the next Get: the last value's size

        private MemStore(StoreHandle handle, string name)
        {
            _handle = handle;
            Name = name;
        }

        /// <summary>The store's name, as given to <see cref="Open"/>.</summary>
        public string Name { get; private set; }

        /// <summary>Whether the handle was closed.</summary>
        public bool IsClosed { get { return _handle.IsClosed; } }

        /// <summary>Opens the existing store called <paramref name="name"/>.</summary>
        /// <param name="name">1..200 characters of [A-Za-z0-9._-], one leading '/' optional.</param>
        /// <returns>The open store; dispose it when done.</returns>
        /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
        /// <exception cref="MemStoreException">No such store (<see cref="MemStoreError.NotFound"/>), or it cannot be opened (<see cref="MemStoreError.Invalid"/>; the message says why).</exception>
        public static MemStore Open(string name)
        {
            if (name == null) throw new ArgumentNullException("name");
            byte[] cname = Utf8.ToNative(name, "name");
            StoreHandle h = Native.cache_open(cname);
            if (h.IsInvalid)
            {
                string msg = LastError();
                MemStoreError code = Native.cache_last_error_code() == Native.CACHE_ERR_NOT_FOUND
                    ? MemStoreError.NotFound : MemStoreError.Invalid;
                h.SetHandleAsInvalid();
                throw new MemStoreException(code, "cannot open store '" + name + "': " + msg);
            }
            return new MemStore(h, name);
        }

        /// <summary>
        /// Removes the store called <paramref name="name"/> from the system. Handles
        /// already open, a watcher's included, keep working until closed.
        /// </summary>
        /// <param name="name">The store's name.</param>
        /// <returns>True if it was removed, false if there was no such store.</returns>
        /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
        /// <exception cref="MemStoreException">An invalid name, or the removal failed.</exception>
        public static bool Unlink(string name)
        {
            if (name == null) throw new ArgumentNullException("name");
            int rc = Native.cache_unlink(Utf8.ToNative(name, "name"));
            if (rc == Native.CACHE_ERR_NOT_FOUND) return false;
            if (rc < 0) throw new MemStoreException((MemStoreError)rc, "cannot unlink store '" + name + "': " + LastError());
            return true;
        }

        /// <summary>A copy of the value stored under <paramref name="key"/> (UTF-8), or null when the store does not hold it.</summary>
        /// <param name="key">The key, such as <see cref="ChangeEvent.StorageKeyNew"/>.</param>
        /// <returns>The value, or null if absent (never put, or evicted since).</returns>
        /// <exception cref="ArgumentNullException"><paramref name="key"/> is null.</exception>
        /// <exception cref="ObjectDisposedException">The store was closed.</exception>
        /// <exception cref="MemStoreException">An empty or too long key, or a store failure.</exception>
        public byte[] Get(string key)
        {
            if (key == null) throw new ArgumentNullException("key");
            byte[] k = System.Text.Encoding.UTF8.GetBytes(key);
            return Get(k);
        }

        /// <summary>A copy of the value stored under a binary <paramref name="key"/>, or null when absent.</summary>
        /// <param name="key">The key's bytes.</param>
        /// <returns>The value, or null if absent.</returns>
        /// <exception cref="ArgumentNullException"><paramref name="key"/> is null.</exception>
        /// <exception cref="ObjectDisposedException">The store was closed.</exception>
        /// <exception cref="MemStoreException">An empty or too long key, or a store failure.</exception>
        public byte[] Get(byte[] key)
        {
            if (key == null) throw new ArgumentNullException("key");
            if (_handle.IsClosed) throw Closed();
            long size = Volatile.Read(ref _sizeHint);
            while (true)
            {
                var buf = new byte[Math.Max(size, 1)];
                long n;
                try
                {
                    n = Native.cache_get(_handle, key, new UIntPtr((ulong)key.Length), buf, new UIntPtr((ulong)buf.Length));
                }
                catch (ObjectDisposedException)
                {
                    throw Closed(); // closed by another thread meanwhile
                }
                if (n == Native.CACHE_ERR_NOT_FOUND) return null;
                if (n < 0) throw new MemStoreException((MemStoreError)n, "get from store '" + Name + "': " + LastError());
                Volatile.Write(ref _sizeHint, (int)Math.Min(Math.Max(n, 64), int.MaxValue));
                if (n <= buf.Length)
                {
                    if (n == buf.Length) return buf;
                    var exact = new byte[n];
                    Buffer.BlockCopy(buf, 0, exact, 0, (int)n);
                    return exact;
                }
                size = n; // too small: nothing was copied; again with the value's size
            }
        }

        /// <summary>Closes the handle; the store and its contents stay (see <see cref="Unlink"/>). Idempotent.</summary>
        public void Close()
        {
            _handle.Dispose();
        }

        /// <summary>Same as <see cref="Close"/>.</summary>
        public void Dispose()
        {
            Close();
        }

        private ObjectDisposedException Closed()
        {
            return new ObjectDisposedException(typeof(MemStore).Name, "the MemStore '" + Name + "' was closed");
        }

        private static string LastError()
        {
            string s = Utf8.FromNative(Native.cache_last_error());
            return string.IsNullOrEmpty(s) ? "unknown error" : s;
        }
    }
}
