// A running recorder (memwatch_record_to): every change event of a watcher
// written into SQLite or PostgreSQL from the recorder's own thread.

using System;

namespace MemWatch
{
    /// <summary>Counters of a <see cref="Recorder"/>. Every event produced while it records
    /// is in exactly one of Written, Dropped, Abandoned or Queued.</summary>
    public sealed class RecorderStats
    {
        /// <summary>Events committed to the database.</summary>
        public long Written { get; internal set; }
        /// <summary>Events the full queue could not take (rows in memwatch_losses).</summary>
        public long Dropped { get; internal set; }
        /// <summary>Events queued but unwritten when the recorder closed with the database down.</summary>
        public long Abandoned { get; internal set; }
        /// <summary>Events waiting to be written.</summary>
        public long Queued { get; internal set; }
        /// <summary>Transactions committed.</summary>
        public long Batches { get; internal set; }
        /// <summary>Connections made again after a loss.</summary>
        public long Reconnects { get; internal set; }
        /// <summary>Whether the recorder is connected now.</summary>
        public bool Connected { get; internal set; }
        /// <summary>This recording in memwatch_recordings.</summary>
        public long RecordingId { get; internal set; }
    }

    /// <summary>A running recorder, made by <see cref="MemoryWatcher.RecordTo"/>. Dispose it to
    /// stop recording (what is queued is written first). Thread-safe.</summary>
    public sealed class Recorder : IDisposable
    {
        private readonly object _lock = new object();
        private IntPtr _ptr;

        internal Recorder(IntPtr ptr)
        {
            _ptr = ptr;
        }

        /// <summary>Frees a recorder that was never disposed.</summary>
        ~Recorder()
        {
            Free();
        }

        private IntPtr Live()
        {
            if (_ptr == IntPtr.Zero) throw new ObjectDisposedException(typeof(Recorder).Name, "the recorder was disposed");
            return _ptr;
        }

        /// <summary>The recorder's counters now.</summary>
        /// <exception cref="ObjectDisposedException">The recorder was disposed.</exception>
        public RecorderStats GetStats()
        {
            lock (_lock)
            {
                Native.RecorderStats s;
                Errors.Check(Native.memwatch_recorder_stats(Live(), out s), "recorder stats failed");
                return new RecorderStats
                {
                    Written = (long)s.written,
                    Dropped = (long)s.dropped,
                    Abandoned = (long)s.abandoned,
                    Queued = (long)s.queued,
                    Batches = (long)s.batches,
                    Reconnects = (long)s.reconnects,
                    Connected = s.connected != 0,
                    RecordingId = s.recording_id,
                };
            }
        }

        /// <summary>Waits until every event queued before the call is written.</summary>
        /// <param name="timeout">How long to wait at most.</param>
        /// <returns>True if everything was written, false on timeout (the database is down).</returns>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="timeout"/> is negative.</exception>
        /// <exception cref="ObjectDisposedException">The recorder was disposed.</exception>
        public bool Flush(TimeSpan timeout)
        {
            if (timeout < TimeSpan.Zero) throw new ArgumentOutOfRangeException("timeout", timeout, "the timeout must not be negative");
            double ms = Math.Min(timeout.TotalMilliseconds, uint.MaxValue);
            lock (_lock)
            {
                int rc = Native.memwatch_recorder_flush(Live(), (uint)ms);
                Errors.Check(rc, "recorder flush failed");
                return rc == 1;
            }
        }

        private void Free()
        {
            lock (_lock)
            {
                if (_ptr != IntPtr.Zero)
                {
                    Native.memwatch_recorder_free(_ptr);
                    _ptr = IntPtr.Zero;
                }
            }
        }

        /// <summary>Stops recording after writing what is queued. Idempotent.</summary>
        public void Dispose()
        {
            Free();
            GC.SuppressFinalize(this);
        }
    }
}
