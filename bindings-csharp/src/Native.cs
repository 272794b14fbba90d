// P/Invoke declarations for libmemwatch (crates/memwatch-capi/include/memwatch.h).
// Every struct here mirrors the header field by field; LayoutKind.Sequential
// applies the same natural alignment as the C compiler on x86-64/aarch64 Linux.

using System;
using System.Runtime.InteropServices;

namespace MemWatch
{
    /// <summary>Raw bindings of the C ABI. Internal: use <see cref="MemoryWatcher"/>.</summary>
    internal static class Native
    {
        /// <summary>
        /// Library name: resolves to libmemwatch.so next to the assembly, under
        /// runtimes/linux-x64/native in a NuGet package, or on LD_LIBRARY_PATH.
        /// </summary>
        internal const string Lib = "memwatch";

        internal const int MEMWATCH_OK = 0;
        internal const uint MEMWATCH_ADAPTER_CSHARP = 5;

        /// <summary>memwatch_options_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Options
        {
            public IntPtr backend;
            public uint writable_window_ms;
            public uint poll_interval_ms;
            public ulong max_value_bytes;
            public ulong preview_bytes;
            public ulong ring_capacity;
            public int snapshots;
            public uint adapter_id;
            public int locate_writers;
            public uint stack_depth;
        }

        /// <summary>memwatch_range_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Range
        {
            public UIntPtr offset;
            public UIntPtr length;
        }

        /// <summary>memwatch_frame_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Frame
        {
            public ulong ip;
            public IntPtr module;
            public ulong module_offset;
            public IntPtr function;
            public IntPtr file;
            public uint line;
            public int inlined;
        }

        /// <summary>memwatch_where_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Where
        {
            public IntPtr thread_name;
            public IntPtr module;
            public ulong module_offset;
            public uint unattributed_faults;
            public uint frame_count;
            public IntPtr frames;
        }

        /// <summary>memwatch_change_event_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Event
        {
            public ulong seq;
            public ulong timestamp_ns;
            public uint adapter_id;
            public uint region_id;
            public IntPtr variable_name;
            public uint thread_id;
            public ulong fault_ip;
            public IntPtr file;
            public IntPtr function;
            public uint line;
            public UIntPtr how_big;
            public IntPtr changed_ranges;
            public UIntPtr changed_range_count;
            public IntPtr old_preview;
            public UIntPtr old_preview_len;
            public IntPtr new_preview;
            public UIntPtr new_preview_len;
            public IntPtr old_value;
            public UIntPtr old_value_len;
            public IntPtr new_value;
            public UIntPtr new_value_len;
            public IntPtr storage_key_old;
            public IntPtr storage_key_new;
            public IntPtr metadata;
            /// <summary>memwatch_where_t*, NULL unless located.</summary>
            public IntPtr location;
            public uint coalesced;
        }

        /// <summary>memwatch_stats_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Stats
        {
            public IntPtr backend;
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 256)]
            public byte[] backend_reason;
            public ulong regions;
            public ulong protected_pages;
            public ulong faults;
            public ulong events;
            public ulong dropped_wheres;
            public ulong native_bytes;
            public ulong snapshot_bytes;
            public ulong pending_events;
            public ulong callback_errors;
            public ulong latency_p50_ns;
            public ulong latency_p99_ns;
            public ulong fallback_regions;
            public ulong gone_regions;
            public ulong shared_regions;
            public ulong reprotect_failures;
            public ulong coalesced_events;
            public ulong hot_pages;
        }

        /// <summary>memwatch_callback_t.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void Callback(IntPtr evt, IntPtr userCtx);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr memwatch_last_error();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_last_error_code();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void memwatch_options_default(out Options opts);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_new(ref Options opts, out IntPtr watcher);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void memwatch_watcher_free(IntPtr watcher);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_close(IntPtr watcher);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_watch(IntPtr watcher, IntPtr addr, UIntPtr len,
            byte[] name, byte[] metadata, out uint id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_unwatch(IntPtr watcher, uint regionId);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_set_callback(IntPtr watcher, IntPtr callback, IntPtr userCtx);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_check_changes(IntPtr watcher, out IntPtr events, out UIntPtr count);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void memwatch_events_free(IntPtr events, UIntPtr count);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_check_changes_start(IntPtr watcher, out IntPtr events, out UIntPtr count, out IntPtr pending);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_pending_wait(IntPtr pending, uint timeoutMs, out IntPtr events, out UIntPtr count);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void memwatch_pending_free(IntPtr pending);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_flush(IntPtr watcher, uint timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_get_stats(IntPtr watcher, out Stats stats);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_report_callback_error(IntPtr watcher);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_watcher_set_value_store(IntPtr watcher, byte[] storeName, ulong capacity);

        [StructLayout(LayoutKind.Sequential)]
        internal struct RecorderStats
        {
            public ulong written;
            public ulong dropped;
            public ulong abandoned;
            public ulong queued;
            public ulong batches;
            public ulong reconnects;
            public int connected;
            public long recording_id;
        }

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_record_to(IntPtr watcher, byte[] url, out IntPtr recorder);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_recorder_flush(IntPtr recorder, uint timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_recorder_stats(IntPtr recorder, out RecorderStats stats);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void memwatch_recorder_free(IntPtr recorder);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr memwatch_page_size();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint memwatch_exit_flush_timeout_ms();

        /// <summary>memwatch_enable_mono_frames: MEMWATCH_ERR_UNSUPPORTED outside Mono.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int memwatch_enable_mono_frames();

        // ---- MemStream's C API (crates/memwatch-capi/include/memwatch_store.h),
        //      exported by libmemwatch too ----

        internal const int CACHE_ERR_NOT_FOUND = -1;
        internal const int CACHE_ERR_INVALID = -2;

        /// <summary>cache_open: NULL (an invalid handle) on error, see cache_last_error.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern StoreHandle cache_open(byte[] name);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern long cache_get(StoreHandle store, byte[] key, UIntPtr keyLen,
            [Out] byte[] buf, UIntPtr bufLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int cache_close(IntPtr store);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int cache_unlink(byte[] name);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr cache_last_error();

        /// <summary>cache_last_error_code: the CACHE_ERR_* code of this thread's last error.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int cache_last_error_code();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr memwatch_version();

        /// <summary>Message of the last failure on this thread.</summary>
        internal static string LastErrorMessage()
        {
            string s = Utf8.FromNative(memwatch_last_error());
            return string.IsNullOrEmpty(s) ? "unknown memwatch error" : s;
        }
    }
}
