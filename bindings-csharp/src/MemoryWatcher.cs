using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace MemWatch
{
    /// <summary>Describes an exception thrown by a change handler.</summary>
    public sealed class CallbackErrorEventArgs : EventArgs
    {
        /// <summary>What the handler threw.</summary>
        public Exception Exception { get; private set; }

        /// <summary>The event the handler was given.</summary>
        public ChangeEvent Event { get; private set; }

        /// <summary>Creates the arguments.</summary>
        /// <param name="exception">What the handler threw.</param>
        /// <param name="evt">The event the handler was given.</param>
        public CallbackErrorEventArgs(Exception exception, ChangeEvent evt)
        {
            Exception = exception;
            Event = evt;
        }
    }

    /// <summary>
    /// Owns one native watcher. Releasing it (Dispose, or finalization when it
    /// is unreachable) frees the native watcher first and only then unpins the
    /// arrays it watched, so native code never sees an array the GC may move.
    /// </summary>
    internal sealed class WatcherHandle : SafeHandle
    {
        /// <summary>Pinned arrays by region id.</summary>
        internal readonly Dictionary<uint, GCHandle> Pins = new Dictionary<uint, GCHandle>();

        /// <summary>Key of the owning watcher in the callback registry.</summary>
        internal long RegistryId;

        /// <summary>An empty (invalid) handle.</summary>
        public WatcherHandle() : base(IntPtr.Zero, true) { }

        /// <summary>Whether no native watcher is held.</summary>
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>Takes ownership of a native watcher.</summary>
        internal void Set(IntPtr h) { SetHandle(h); }

        /// <summary>Frees the native watcher, then unpins its arrays.</summary>
        protected override bool ReleaseHandle()
        {
            // Closes (unwatches everything, stops delivery) and frees. After this
            // returns the engine no longer touches any watched memory.
            Native.memwatch_watcher_free(handle);
            lock (Pins)
            {
                foreach (GCHandle pin in Pins.Values) pin.Free();
                Pins.Clear();
            }
            MemoryWatcher.Unregister(RegistryId);
            return true;
        }
    }

    /// <summary>
    /// Watches memory and reports every change: which region, which bytes, old and
    /// new values, when and (protect backend) which thread.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Without handlers, changes queue up until <see cref="CheckChanges()"/>, which is
    /// synchronous: every write made before the call is in its result. With a
    /// handler (<see cref="Changed"/>, <see cref="OnChange"/> or
    /// <see cref="SetCallback"/>), events are delivered on the watcher's own
    /// delivery thread, one at a time, and <see cref="CheckChanges()"/> returns an
    /// empty list after every pending event was delivered.
    /// </para>
    /// <para>
    /// A watcher with at least one handler stays alive (like FileSystemWatcher)
    /// until it is disposed or its handlers are removed; one without handlers is
    /// released when it becomes unreachable. Either way, call <see cref="Dispose"/>.
    /// All members are thread-safe.
    /// </para>
    /// </remarks>
    public sealed class MemoryWatcher : IDisposable
    {
        // One delegate for the whole process, never collected: the native side
        // keeps its function pointer for as long as any watcher has a callback.
        private static readonly Native.Callback s_trampoline = Trampoline;
        private static readonly IntPtr s_trampolinePtr = Marshal.GetFunctionPointerForDelegate(s_trampoline);

        // The native user_ctx is a key into this table, never a GCHandle: a key
        // that was removed simply finds nothing, whatever the native side's timing.
        private static readonly object s_registryLock = new object();
        private static readonly Dictionary<long, Registration> s_registry = new Dictionary<long, Registration>();
        private static long s_nextRegistryId;

        private sealed class Registration
        {
            public WeakReference<MemoryWatcher> Weak;
            public MemoryWatcher Strong; // set while a native callback is installed
        }

        static MemoryWatcher()
        {
            // Before the runtime shuts down (Mono aborts threads and finalizes every
            // object then), stop every watcher: the delivery threads are joined while
            // the runtime still runs managed code normally.
            try { AppDomain.CurrentDomain.ProcessExit += (s, e) => DisposeAll(); }
            catch (Exception) { }
        }

        private readonly WatcherHandle _handle;
        private readonly long _registryId;
        private readonly object _sync = new object();       // handler fields
        private readonly object _nativeLock = new object(); // native callback transitions
        private int _disposed;
        private bool _nativeCallbackInstalled;
        private Action<ChangeEvent> _callback;
        private EventHandler<ChangeEvent> _changed;
        private Action<ChangeEvent> _onChange;
        private EventHandler<CallbackErrorEventArgs> _callbackError;

        /// <summary>Creates a watcher with the default options (backend auto).</summary>
        public MemoryWatcher() : this(new WatcherOptions()) { }

        /// <summary>Creates a watcher that uses the given backend.</summary>
        /// <param name="backend">Detection mechanism.</param>
        public MemoryWatcher(Backend backend) : this(new WatcherOptions { Backend = backend }) { }

        /// <summary>Creates a watcher with the given options.</summary>
        /// <param name="options">Settings; null properties keep the engine's defaults.</param>
        /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
        /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
        /// <exception cref="MemWatchNotSupportedException">The backend is not available here.</exception>
        /// <exception cref="DllNotFoundException">libmemwatch.so cannot be found.</exception>
        public MemoryWatcher(WatcherOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            Native.Options o;
            try
            {
                Native.memwatch_options_default(out o);
            }
            catch (DllNotFoundException ex)
            {
                throw new DllNotFoundException(
                    "libmemwatch.so was not found: put it next to MemWatch.dll, under runtimes/linux-x64/native " +
                    "(NuGet package), or on LD_LIBRARY_PATH (" + ex.Message + ")", ex);
            }
            options.Apply(ref o);
            byte[] backend = Utf8.ToNative(WatcherOptions.BackendName(options.Backend), "options");
            GCHandle pinnedBackend = GCHandle.Alloc(backend, GCHandleType.Pinned);
            var h = new WatcherHandle();
            try
            {
                o.backend = pinnedBackend.AddrOfPinnedObject();
                IntPtr raw;
                int rc = Native.memwatch_watcher_new(ref o, out raw);
                Errors.Check(rc, "cannot create watcher", "options");
                h.Set(raw);
            }
            finally
            {
                pinnedBackend.Free();
            }
            _handle = h;
            _registryId = Register(this);
            _handle.RegistryId = _registryId;
            // Managed frames of located writes (Mono only; elsewhere the
            // stack keeps its native frames, so the result is not checked).
            if (o.locate_writers != 0) Native.memwatch_enable_mono_frames();
        }

        /// <summary>The operating system's page size in bytes (the unit of the protect backend).</summary>
        public static int PageSize { get { return Environment.SystemPageSize; } }

        /// <summary>Version of the native library, e.g. "0.1.0".</summary>
        /// <exception cref="DllNotFoundException">libmemwatch.so cannot be found.</exception>
        public static string NativeVersion { get { return Utf8.FromNative(Native.memwatch_version()); } }

        /// <summary>Whether <see cref="Dispose"/> was called.</summary>
        public bool IsDisposed { get { return Volatile.Read(ref _disposed) != 0; } }

        // ------------------------------------------------------------------
        // Watching

        /// <summary>Watches a whole array. The array is pinned until unwatched or disposed.</summary>
        /// <param name="data">The array; must not be empty.</param>
        /// <param name="name">Name reported in events (<see cref="ChangeEvent.VariableName"/>).</param>
        /// <param name="metadata">Optional text reported in events.</param>
        /// <returns>The region id, for <see cref="Unwatch"/> and <see cref="ChangeEvent.RegionId"/>.</returns>
        /// <exception cref="ArgumentNullException"><paramref name="data"/> or <paramref name="name"/> is null.</exception>
        /// <exception cref="ArgumentException">The array is empty, a string holds a NUL, or the bytes
        /// overlap a region of this watcher (<see cref="MemWatchArgumentException"/>).</exception>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public int Watch(byte[] data, string name, string metadata = null)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (data.Length == 0) throw new ArgumentException("cannot watch an empty array", "data");
            return Watch(data, 0, data.Length, name, metadata);
        }

        /// <summary>Watches <paramref name="count"/> bytes of an array from <paramref name="offset"/>.
        /// The array is pinned until unwatched or disposed.</summary>
        /// <param name="data">The array.</param>
        /// <param name="offset">First watched byte.</param>
        /// <param name="count">Number of watched bytes, at least 1.</param>
        /// <param name="name">Name reported in events.</param>
        /// <param name="metadata">Optional text reported in events.</param>
        /// <returns>The region id.</returns>
        /// <exception cref="ArgumentOutOfRangeException">The range is empty or outside the array.</exception>
        /// <exception cref="ArgumentException">See <see cref="Watch(byte[], string, string)"/>.</exception>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public int Watch(byte[] data, int offset, int count, string name, string metadata = null)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (offset < 0 || offset > data.Length)
                throw new ArgumentOutOfRangeException("offset", offset,
                    "offset must be between 0 and the array length (" + data.Length + ")");
            if (count <= 0)
                throw new ArgumentOutOfRangeException("count", count, "cannot watch zero bytes: count must be at least 1");
            if (count > data.Length - offset)
                throw new ArgumentOutOfRangeException("count", count,
                    "offset + count (" + ((long)offset + count) + ") exceeds the array length (" + data.Length + ")");
            byte[] nameBytes = NameBytes(name);
            byte[] metaBytes = Utf8.ToNative(metadata, "metadata");

            IntPtr h = Enter();
            try
            {
                GCHandle pin = GCHandle.Alloc(data, GCHandleType.Pinned);
                bool kept = false;
                try
                {
                    IntPtr addr = new IntPtr(pin.AddrOfPinnedObject().ToInt64() + offset);
                    uint id;
                    int rc = Native.memwatch_watcher_watch(h, addr, new UIntPtr((uint)count), nameBytes, metaBytes, out id);
                    Errors.Check(rc, "cannot watch " + count + " bytes of the array as '" + name + "'", "data");
                    lock (_handle.Pins) _handle.Pins.Add(id, pin);
                    kept = true;
                    return unchecked((int)id);
                }
                finally
                {
                    if (!kept) pin.Free();
                }
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>Watches native memory, e.g. from Marshal.AllocHGlobal or mmap.</summary>
        /// <param name="address">Start of the range.</param>
        /// <param name="size">Length in bytes, at least 1.</param>
        /// <param name="name">Name reported in events.</param>
        /// <param name="metadata">Optional text reported in events.</param>
        /// <returns>The region id.</returns>
        /// <remarks>The memory must stay allocated until it is unwatched or the watcher disposed.</remarks>
        /// <exception cref="ArgumentException">Null address; or unmapped, read-only or overlapping memory
        /// (<see cref="MemWatchArgumentException"/> with <see cref="MemWatchArgumentException.Error"/>).</exception>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is less than 1.</exception>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public int Watch(IntPtr address, long size, string name, string metadata = null)
        {
            if (address == IntPtr.Zero) throw new ArgumentException("address must not be IntPtr.Zero", "address");
            if (size <= 0) throw new ArgumentOutOfRangeException("size", size, "cannot watch zero bytes: size must be at least 1");
            if (IntPtr.Size == 4 && size > uint.MaxValue) throw new ArgumentOutOfRangeException("size", size, "size too large for this process");
            byte[] nameBytes = NameBytes(name);
            byte[] metaBytes = Utf8.ToNative(metadata, "metadata");
            IntPtr h = Enter();
            try
            {
                uint id;
                int rc = Native.memwatch_watcher_watch(h, address, new UIntPtr((ulong)size), nameBytes, metaBytes, out id);
                Errors.Check(rc, "cannot watch " + size + " bytes at 0x" + address.ToInt64().ToString("x") + " as '" + name + "'", "address");
                return unchecked((int)id);
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>Stops watching a region and unpins its array.</summary>
        /// <param name="id">A region id from Watch.</param>
        /// <returns>True if the region was watched; false if the id is unknown or already unwatched.</returns>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public bool Unwatch(int id)
        {
            IntPtr h = Enter();
            try
            {
                uint rid = unchecked((uint)id);
                int rc = Native.memwatch_watcher_unwatch(h, rid);
                Errors.Check(rc, "cannot unwatch region " + id);
                // Dispose marks the watcher before it closes the native side, so a
                // region that vanished because of a concurrent Dispose is reported
                // as that, not as an unknown id.
                if (rc == 0 && IsDisposed) throw DisposedException();
                if (rc == 0) return false;
                // The engine no longer reads the memory: the array may move again.
                lock (_handle.Pins)
                {
                    GCHandle pin;
                    if (_handle.Pins.TryGetValue(rid, out pin))
                    {
                        _handle.Pins.Remove(rid);
                        pin.Free();
                    }
                }
                return true;
            }
            finally
            {
                Leave();
            }
        }

        // ------------------------------------------------------------------
        // Events

        /// <summary>
        /// Raised on the delivery thread for every change (sender: this watcher).
        /// While any handler is attached, <see cref="CheckChanges()"/> returns no events.
        /// </summary>
        /// <exception cref="ObjectDisposedException">Adding a handler after Dispose.</exception>
        public event EventHandler<ChangeEvent> Changed
        {
            add
            {
                if (value == null) return;
                lock (_sync) { ThrowIfDisposed(); _changed += value; }
                try { SyncNativeCallback(); }
                catch { lock (_sync) _changed -= value; throw; }
            }
            remove
            {
                lock (_sync) _changed -= value;
                SyncNativeCallbackQuietly();
            }
        }

        /// <summary>
        /// The seed API's event: <c>watcher.OnChange += e => ...</c>. Same delivery as
        /// <see cref="Changed"/>, with the event as the only argument.
        /// </summary>
        /// <exception cref="ObjectDisposedException">Adding a handler after Dispose.</exception>
        public event Action<ChangeEvent> OnChange
        {
            add
            {
                if (value == null) return;
                lock (_sync) { ThrowIfDisposed(); _onChange += value; }
                try { SyncNativeCallback(); }
                catch { lock (_sync) _onChange -= value; throw; }
            }
            remove
            {
                lock (_sync) _onChange -= value;
                SyncNativeCallbackQuietly();
            }
        }

        /// <summary>
        /// Raised (on the delivery thread) when a change handler throws. Without a
        /// subscriber the exception is written to standard error. Either way it is
        /// counted in <see cref="WatcherStats.CallbackErrors"/> and delivery goes on.
        /// </summary>
        public event EventHandler<CallbackErrorEventArgs> CallbackError
        {
            add { lock (_sync) _callbackError += value; }
            remove { lock (_sync) _callbackError -= value; }
        }

        /// <summary>
        /// Sets the single callback (set_callback of the C API), replacing the previous
        /// one; null removes it. It runs before the <see cref="Changed"/> handlers.
        /// </summary>
        /// <param name="callback">Called on the delivery thread for every change, or null.</param>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public void SetCallback(Action<ChangeEvent> callback)
        {
            Action<ChangeEvent> previous;
            lock (_sync)
            {
                ThrowIfDisposed();
                previous = _callback;
                _callback = callback;
            }
            try
            {
                SyncNativeCallback();
            }
            catch
            {
                lock (_sync) { if (_callback == callback) _callback = previous; }
                throw;
            }
        }

        /// <summary>
        /// Detects changes now. Every write made before this call is in the result,
        /// or was already delivered to the handlers (then the result is empty).
        /// </summary>
        /// <returns>The changes since the previous call, at most one per region, in detection order.</returns>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public IReadOnlyList<ChangeEvent> CheckChanges()
        {
            IntPtr h = Enter();
            try
            {
                IntPtr arr;
                UIntPtr n;
                int rc = Native.memwatch_watcher_check_changes(h, out arr, out n);
                Errors.Check(rc, "check_changes failed");
                return TakeEvents(arr, n);
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>How long one native wait of <see cref="CheckChanges(CancellationToken)"/> lasts before it looks at its token again.</summary>
        private const uint WaitSliceMs = 10;

        /// <summary>
        /// <see cref="CheckChanges()"/> whose wait for the handlers to receive the events can
        /// be cancelled: when <paramref name="cancellationToken"/> is cancelled it throws
        /// <see cref="OperationCanceledException"/> within about 10 ms. Cancelling loses nothing:
        /// the handlers still receive every event, later. Without handlers it never waits.
        /// </summary>
        /// <param name="cancellationToken">Ends the wait; already cancelled = nothing is detected.</param>
        /// <returns>As <see cref="CheckChanges()"/>.</returns>
        /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public IReadOnlyList<ChangeEvent> CheckChanges(CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            IntPtr h = Enter();
            IntPtr pending = IntPtr.Zero;
            try
            {
                IntPtr arr;
                UIntPtr n;
                int rc = Native.memwatch_watcher_check_changes_start(h, out arr, out n, out pending);
                Errors.Check(rc, "check_changes failed");
                while (pending != IntPtr.Zero)
                {
                    rc = Native.memwatch_pending_wait(pending, WaitSliceMs, out arr, out n);
                    Errors.Check(rc, "check_changes failed");
                    if (rc == 1) break;
                    cancellationToken.ThrowIfCancellationRequested();
                }
                return TakeEvents(arr, n);
            }
            finally
            {
                if (pending != IntPtr.Zero) Native.memwatch_pending_free(pending);
                Leave();
            }
        }

        /// <summary>Converts and frees a native event array.</summary>
        private static IReadOnlyList<ChangeEvent> TakeEvents(IntPtr arr, UIntPtr n)
        {
            try
            {
                int count = checked((int)n.ToUInt64());
                var events = new ChangeEvent[count];
                int size = Marshal.SizeOf(typeof(Native.Event));
                for (int i = 0; i < count; i++)
                    events[i] = ChangeEvent.FromNative(new IntPtr(arr.ToInt64() + (long)i * size));
                return Array.AsReadOnly(events);
            }
            finally
            {
                Native.memwatch_events_free(arr, n);
            }
        }

        /// <summary>
        /// How long the exit hook (<c>AppDomain.ProcessExit</c>) waits, for all watchers together,
        /// for the handlers to receive the changes made before the process ends: the engine's
        /// <c>EXIT_FLUSH_TIMEOUT</c> (<c>memwatch_exit_flush_timeout_ms()</c>), which every binding's exit hook uses.
        /// </summary>
        public static readonly TimeSpan ExitFlushTimeout = TimeSpan.FromMilliseconds(Native.memwatch_exit_flush_timeout_ms());

        /// <summary>At exit: hands pending changes to the handlers, waiting at most <paramref name="timeoutMs"/>.</summary>
        private void FlushForExit(uint timeoutMs)
        {
            IntPtr h = Enter();
            try
            {
                Errors.Check(Native.memwatch_watcher_flush(h, timeoutMs), "flush failed");
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>
        /// Sends the whole old and new values of regions larger than
        /// <see cref="WatcherOptions.MaxValueBytes"/> (default 4096) to the MemStream store
        /// <paramref name="storeName"/>, a key-value store in shared memory that any
        /// process can read with <see cref="MemStore.Open"/>. Events of such regions
        /// then carry <see cref="ChangeEvent.StorageKeyNew"/> (the new value's key) and
        /// <see cref="ChangeEvent.StorageKeyOld"/> (the old value's, while the store still
        /// holds it) instead of the values. Calling it again replaces the store;
        /// <see cref="ClearValueStore"/> stops it.
        /// </summary>
        /// <remarks>
        /// Keys are "memwatch/{adapter_id}/{region_id}/{epoch}". They name no process and
        /// region ids are per process, so give each watching process a store of its own;
        /// readers may be any number of processes. The current values of regions already
        /// watched are stored at once.
        /// </remarks>
        /// <param name="storeName">The store: 1..200 characters of [A-Za-z0-9._-], one leading '/' optional.</param>
        /// <param name="capacity">Bytes of the store if it has to be created (with least-recently-used
        /// eviction); an existing store keeps its own size and policy. 0 only opens an existing store.</param>
        /// <exception cref="ArgumentNullException"><paramref name="storeName"/> is null.</exception>
        /// <exception cref="ArgumentException">An empty name, or one containing NUL.</exception>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="capacity"/> is negative.</exception>
        /// <exception cref="MemWatchArgumentException">The store cannot be created or opened (invalid name, no such store with capacity 0, ...).</exception>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public void SetValueStore(string storeName, long capacity)
        {
            if (storeName == null) throw new ArgumentNullException("storeName", "a store name is needed (ClearValueStore stops the value store)");
            if (storeName.Length == 0) throw new ArgumentException("the store name is empty (ClearValueStore stops the value store)", "storeName");
            if (capacity < 0) throw new ArgumentOutOfRangeException("capacity", capacity, "the capacity must not be negative");
            byte[] name = Utf8.ToNative(storeName, "storeName");
            IntPtr h = Enter();
            try
            {
                int rc = Native.memwatch_watcher_set_value_store(h, name, (ulong)capacity);
                Errors.Check(rc, "cannot set the value store", "storeName");
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>
        /// Stops sending large values to the value store: later events of large regions
        /// carry neither values nor storage keys. Values already stored stay there.
        /// </summary>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public void ClearValueStore()
        {
            IntPtr h = Enter();
            try
            {
                int rc = Native.memwatch_watcher_set_value_store(h, null, 0);
                Errors.Check(rc, "cannot clear the value store");
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>
        /// Records every change event of this watcher (callback or CheckChanges alike) into a
        /// database: a file path or "sqlite:PATH" (SQLite, WAL mode) or
        /// "postgresql://user@host:port/db". The tables memwatch_recordings, memwatch_events and
        /// memwatch_losses are created if missing. Never blocks the watched program: a bounded
        /// queue feeds the recorder's own thread; events that do not fit are counted
        /// (<see cref="RecorderStats.Dropped"/>) and written to memwatch_losses.
        /// </summary>
        /// <param name="url">Where to record.</param>
        /// <returns>The running recorder; dispose it to stop recording.</returns>
        /// <exception cref="ArgumentNullException"><paramref name="url"/> is null.</exception>
        /// <exception cref="MemWatchArgumentException">The URL is neither SQLite nor PostgreSQL.</exception>
        /// <exception cref="MemWatchException">The database cannot be opened or reached (Error == Database).</exception>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public Recorder RecordTo(string url)
        {
            if (url == null) throw new ArgumentNullException("url");
            byte[] u = Utf8.ToNative(url, "url");
            IntPtr h = Enter();
            try
            {
                IntPtr rec;
                int rc = Native.memwatch_record_to(h, u, out rec);
                Errors.Check(rc, "cannot record to '" + url + "'", "url");
                return new Recorder(rec);
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>Counters of this watcher.</summary>
        /// <exception cref="ObjectDisposedException">The watcher was disposed.</exception>
        public WatcherStats GetStats()
        {
            IntPtr h = Enter();
            try
            {
                Native.Stats s;
                int rc = Native.memwatch_watcher_get_stats(h, out s);
                Errors.Check(rc, "get_stats failed");
                return new WatcherStats
                {
                    Backend = Utf8.FromNative(s.backend) ?? "none",
                    BackendReason = Utf8.FromFixed(s.backend_reason),
                    Regions = (long)s.regions,
                    ProtectedPages = (long)s.protected_pages,
                    Faults = (long)s.faults,
                    Events = (long)s.events,
                    DroppedWheres = (long)s.dropped_wheres,
                    NativeBytes = (long)s.native_bytes,
                    SnapshotBytes = (long)s.snapshot_bytes,
                    PendingEvents = (long)s.pending_events,
                    CallbackErrors = (long)s.callback_errors,
                    LatencyP50Ns = (long)s.latency_p50_ns,
                    LatencyP99Ns = (long)s.latency_p99_ns,
                    FallbackRegions = (long)s.fallback_regions,
                    GoneRegions = (long)s.gone_regions,
                    SharedRegions = (long)s.shared_regions,
                    ReprotectFailures = (long)s.reprotect_failures,
                    CoalescedEvents = (long)s.coalesced_events,
                    HotPages = (long)s.hot_pages,
                };
            }
            finally
            {
                Leave();
            }
        }

        /// <summary>
        /// Stops watching everything, stops delivery, frees the native watcher and
        /// unpins the watched arrays. Idempotent; may be called from inside a
        /// handler. Called from another thread while a handler runs, it returns once
        /// the native side has stopped delivery; the running handler finishes normally.
        /// </summary>
        public void Dispose()
        {
            lock (_sync)
            {
                if (_disposed != 0) return;
                Volatile.Write(ref _disposed, 1);
                _callback = null;
                _changed = null;
                _onChange = null;
            }
            // Stop watching and delivering now, even if another thread is inside a
            // call (that call keeps the handle alive; the free happens after it).
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                Native.memwatch_watcher_close(_handle.DangerousGetHandle());
            }
            catch (ObjectDisposedException)
            {
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            SetStrong(false);
            _handle.Dispose();
        }

        // ------------------------------------------------------------------
        // Internals

        private static byte[] NameBytes(string name)
        {
            if (name == null) throw new ArgumentNullException("name", "a region needs a name (it is reported in events)");
            return Utf8.ToNative(name, "name");
        }

        private ObjectDisposedException DisposedException()
        {
            return new ObjectDisposedException(typeof(MemoryWatcher).Name, "the MemoryWatcher was disposed");
        }

        private void ThrowIfDisposed()
        {
            if (IsDisposed) throw DisposedException();
        }

        /// <summary>Keeps the native watcher alive for one call; pair with <see cref="Leave"/>.</summary>
        private IntPtr Enter()
        {
            ThrowIfDisposed();
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
                throw DisposedException();
            }
            if (!added) throw DisposedException();
            return _handle.DangerousGetHandle();
        }

        private void Leave()
        {
            _handle.DangerousRelease();
        }

        private bool HasHandlers()
        {
            lock (_sync) return _callback != null || _changed != null || _onChange != null;
        }

        /// <summary>Installs the native callback while any handler exists, clears it otherwise.</summary>
        private void SyncNativeCallback()
        {
            lock (_nativeLock)
            {
                bool want = HasHandlers();
                if (want == _nativeCallbackInstalled) return;
                IntPtr h = Enter();
                try
                {
                    if (want)
                    {
                        SetStrong(true);
                        int rc = Native.memwatch_watcher_set_callback(h, s_trampolinePtr, new IntPtr(_registryId));
                        if (rc < 0) SetStrong(false);
                        Errors.Check(rc, "cannot set the callback");
                    }
                    else
                    {
                        int rc = Native.memwatch_watcher_set_callback(h, IntPtr.Zero, IntPtr.Zero);
                        Errors.Check(rc, "cannot clear the callback");
                        SetStrong(false);
                    }
                    _nativeCallbackInstalled = want;
                }
                finally
                {
                    Leave();
                }
            }
        }

        private void SyncNativeCallbackQuietly()
        {
            if (IsDisposed) return;
            try { SyncNativeCallback(); }
            catch (ObjectDisposedException) { }
        }

        private static long Register(MemoryWatcher w)
        {
            lock (s_registryLock)
            {
                long id = ++s_nextRegistryId;
                s_registry[id] = new Registration { Weak = new WeakReference<MemoryWatcher>(w) };
                return id;
            }
        }

        internal static void Unregister(long id)
        {
            lock (s_registryLock) s_registry.Remove(id);
        }

        private void SetStrong(bool strong)
        {
            lock (s_registryLock)
            {
                Registration r;
                if (s_registry.TryGetValue(_registryId, out r)) r.Strong = strong ? this : null;
            }
        }

        private static void DisposeAll()
        {
            var live = new List<MemoryWatcher>();
            lock (s_registryLock)
            {
                foreach (Registration r in s_registry.Values)
                {
                    MemoryWatcher w;
                    if (r.Weak.TryGetTarget(out w)) live.Add(w);
                }
            }
            // Changes made before the exit go to the handlers first (all watchers
            // together wait ExitFlushTimeout at most), then every watcher stops.
            var deadline = DateTime.UtcNow + ExitFlushTimeout;
            foreach (MemoryWatcher w in live)
            {
                double left = (deadline - DateTime.UtcNow).TotalMilliseconds;
                if (left <= 0) break;
                try { w.FlushForExit((uint)left); }
                catch (Exception) { }
            }
            foreach (MemoryWatcher w in live)
            {
                try { w.Dispose(); }
                catch (Exception) { }
            }
        }

        private static MemoryWatcher Lookup(long id)
        {
            lock (s_registryLock)
            {
                Registration r;
                MemoryWatcher w;
                if (s_registry.TryGetValue(id, out r) && r.Weak.TryGetTarget(out w)) return w;
                return null;
            }
        }

        /// <summary>Called by the native delivery thread. Nothing may escape into native code.</summary>
        private static void Trampoline(IntPtr evt, IntPtr ctx)
        {
            try
            {
                MemoryWatcher w = Lookup(ctx.ToInt64());
                if (w == null || w.IsDisposed) return;
                w.Dispatch(ChangeEvent.FromNative(evt));
            }
            catch (ThreadAbortException)
            {
                // Mono aborts attached threads at shutdown. The abort must not
                // unwind into the native delivery thread's frames.
                ResetAbort();
            }
            catch (Exception ex)
            {
                LastResort("memwatch: internal error while delivering an event: ", ex);
            }
        }

        private static void ResetAbort()
        {
            try { Thread.ResetAbort(); }
            catch (Exception) { }
        }

        private void Dispatch(ChangeEvent e)
        {
            Action<ChangeEvent> callback;
            EventHandler<ChangeEvent> changed;
            Action<ChangeEvent> onChange;
            lock (_sync)
            {
                callback = _callback;
                changed = _changed;
                onChange = _onChange;
            }
            if (callback != null)
            {
                try { callback(e); }
                catch (Exception ex) { HandlerFailed(ex, e); }
            }
            if (changed != null)
            {
                foreach (EventHandler<ChangeEvent> d in changed.GetInvocationList())
                {
                    try { d(this, e); }
                    catch (Exception ex) { HandlerFailed(ex, e); }
                }
            }
            if (onChange != null)
            {
                foreach (Action<ChangeEvent> d in onChange.GetInvocationList())
                {
                    try { d(e); }
                    catch (Exception ex) { HandlerFailed(ex, e); }
                }
            }
        }

        private void HandlerFailed(Exception ex, ChangeEvent e)
        {
            if (ex is ThreadAbortException)
            {
                ResetAbort();
                return;
            }
            // Counted in the native stats (stats.callback_errors); after Dispose
            // there are no stats left to count in.
            if (!IsDisposed)
            {
                try
                {
                    IntPtr h = Enter();
                    try { Native.memwatch_watcher_report_callback_error(h); }
                    finally { Leave(); }
                }
                catch (ObjectDisposedException)
                {
                }
            }

            EventHandler<CallbackErrorEventArgs> errorHandlers;
            lock (_sync) errorHandlers = _callbackError;
            if (errorHandlers == null)
            {
                LastResort("memwatch: a change handler for '" + e.VariableName + "' threw: ", ex);
                return;
            }
            var args = new CallbackErrorEventArgs(ex, e);
            foreach (EventHandler<CallbackErrorEventArgs> d in errorHandlers.GetInvocationList())
            {
                try { d(this, args); }
                catch (Exception ex2) { LastResort("memwatch: a CallbackError handler threw: ", ex2); }
            }
        }

        private static void LastResort(string what, Exception ex)
        {
            try { Console.Error.WriteLine(what + ex); }
            catch { }
        }
    }
}
